//! The allocator, tuned for a 128 MB function (glibc's malloc; elsewhere these do nothing).
//!
//! glibc gives each thread that allocates its own arena, and keeps what an arena frees for
//! that arena. The conversion uses several threads per invocation (two parse, two build the
//! batch, two encode it, one per codec compresses), so a 6 MB event's peak could vary by tens
//! of MiB with which arena served what, and a warm function's resident set crept up over
//! invocations. One arena keeps the peak flat (`bench/RESULTS.md`, `bench/soak.py`).
//!
//! A warm function keeps the pages it used: large blocks come from the heap, not from fresh
//! mappings, and freed memory is not handed back. Handing it back after each invocation (as
//! an earlier version did) made the next one fault every page in again, a quarter of a 6 MB
//! event's time end to end; the resident set between invocations is instead the peak, which
//! the function has to have room for anyway.

/// One malloc arena for every thread, and freed memory kept for the next invocation. Call
/// first thing in `main`, before other threads.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator settings; it is called before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Blocks below 32 MiB (a 6 MB event's tape reserves 13 MiB) from the heap, where a
        // freed block's pages are reused; the default maps blocks from 128 KiB up afresh (a
        // threshold that grows with the largest freed), so each invocation faulted them in.
        // Larger blocks (a streamed file's 33 MiB part buffers) stay their own mappings,
        // returned whole when freed: in the heap they fragmented it (100 MB streamed: peak
        // 91 MiB, against 58).
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // The heap's top is not trimmed below 256 MiB (more than a 128 MB function has).
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}
