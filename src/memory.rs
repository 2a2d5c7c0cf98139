//! The allocator, tuned for a 128 MB function (glibc's malloc; elsewhere these do nothing).
//!
//! glibc gives each thread that allocates its own arena, and keeps what an arena frees for
//! that arena. The conversion uses up to four threads per invocation (two build the batch,
//! one per codec encodes), so a 6 MB event's peak could vary by tens of MiB with which arena
//! served what, and a warm function's resident set crept up over invocations. One arena, and
//! freed memory handed back after each invocation, keep both flat (`bench/RESULTS.md`,
//! `bench/soak.py`).

/// One malloc arena for every thread. Call first thing in `main`, before other threads.
pub fn use_one_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator settings; it is called before any other
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns the memory an invocation freed to the system, so the next one starts from the
/// same footprint.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives unused pages of glibc's heaps back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
