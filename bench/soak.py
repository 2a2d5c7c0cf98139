#!/usr/bin/env python3
"""The soak: the built function under the Runtime API emulator (bench/emulator.py), COUNT
invocations cycling through every sample event (events/), every corpus input Lambda would
deliver (tests/corpus/: well-formed JSON only, since Lambda refuses other payloads before any
function sees them) and, every 25th, a 1 MB event. Checks that every valid invocation's
objects are in S3 exactly once and nothing else is, that every invalid one is refused with its
expected errorType, and that the process's RSS after COUNT invocations is within 10% of its
RSS after 50 (no leak).

usage: soak.py BOOTSTRAP LOCAL_S3_BIN [COUNT]     (exit status 1 on any failure)"""
import json
import pathlib
import sys
import tempfile

from emulator import Emulator, LocalS3, holds

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_TARGETS = ('[{"prefix":"s3://my-bucket/out/parquet/","compression":"uncompressed"},'
                   '{"prefix":"s3://my-bucket/out/parquet-snappy/","compression":"snappy"}]')
LEAK_TOLERANCE = 0.10


def cases():
    """(name, payload bytes, expectation: {} to convert, {"errorType"} or {"reply"})."""
    out = []
    for folder in ["events", "tests/corpus"]:
        for path in sorted((ROOT / folder).glob("*.json")):
            if path.name.endswith(".expect.json"):
                continue
            payload = path.read_bytes()
            try:
                json.loads(payload.decode("utf-8"))  # strict: no BOM, no invalid UTF-8
            except ValueError:
                continue  # never reaches a function on Lambda
            expect = path.with_suffix(".expect.json")
            out.append((f"{folder}/{path.name}", payload,
                        json.loads(expect.read_text()) if expect.exists() else {}))
    return out


def large_event():
    """About 1 MB of the seed job's rows, to the default targets."""
    row = {"name": "John Doe", "age": 30, "city": "New York"}
    rows = [{**row, "age": i} for i in range(22_000)]
    return ("1 MB of seed rows", json.dumps({"rows": rows}).encode(), {})


def main():
    bootstrap, local_s3_bin = sys.argv[1:3]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    pool = cases()
    big = large_event()
    with tempfile.TemporaryDirectory() as root:
        s3 = LocalS3.with_samples(local_s3_bin, root)
        function = Emulator(bootstrap, {
            "AWS_ENDPOINT_URL_S3": s3.endpoint,
            "DEFAULT_TARGETS": DEFAULT_TARGETS,
        })
        try:
            init_ms = function.init_ms()
            expected_keys, failures = set(), []
            counts = {"valid": 0, "invalid": 0, "dry runs": 0, "replies": 0}
            rss_at_50, trace = None, []
            for i in range(count):
                name, payload, expect = big if i % 25 == 24 else pool[i % len(pool)]
                before = set(s3.objects())
                kind, body, _ = function.invoke(payload)
                if "reply" in expect:
                    # An SQS batch or a test event: the reply says what failed; what the batch's
                    # messages wrote is checked exactly by tests/events.rs.
                    counts["replies"] += 1
                    if kind != "response" or not holds(body, expect["reply"]):
                        failures.append(f"#{i} {name}: expected {expect['reply']}, got {kind} {body}")
                    expected_keys.update(set(s3.objects()) - before)
                elif "errorType" not in expect:
                    if kind != "response":
                        failures.append(f"#{i} {name}: refused: {body}")
                        continue
                    counts["dry runs" if body.get("dry_run") else "valid"] += 1
                    keys = [o["key"] for o in body["objects"]]
                    stored = set(s3.objects())
                    if body.get("dry_run"):
                        if stored & set(keys):
                            failures.append(f"#{i} {name}: a dry run wrote {stored & set(keys)}")
                        continue
                    missing = [k for k in keys if k not in stored]
                    # A source object's keys follow the object, so each delivery overwrites them.
                    again = [] if body.get("source") else [k for k in keys if k in expected_keys]
                    expected_keys.update(keys)
                    if missing or again:
                        failures.append(f"#{i} {name}: missing {missing}, written twice {again}")
                else:
                    counts["invalid"] += 1
                    if kind != "error" or body.get("errorType") != expect["errorType"]:
                        failures.append(f"#{i} {name}: expected {expect['errorType']}, got {kind} {body}")
                if i + 1 == 50:
                    rss_at_50 = function.rss_kib()
                if (i + 1) % 100 == 0:
                    trace.append(f"{i + 1}: {function.rss_kib() / 1024:.1f}")
            rss_end, peak = function.rss_kib(), function.peak_rss_kib()
            stray = sorted(set(s3.objects()) - expected_keys)
            if stray:
                failures.append(f"objects no invocation reported: {stray[:5]} ({len(stray)})")
            growth = (rss_end - rss_at_50) / rss_at_50 if rss_at_50 else 0.0
            if rss_at_50 and growth > LEAK_TOLERANCE:
                failures.append(f"RSS grew {growth:.1%} from invocation 50 to {count}")
        finally:
            function.stop()
            s3.stop()
    print(f"soak: {count} invocations ({counts['valid']} written, {counts['dry runs']} dry runs, "
          f"{counts['invalid']} refused, {counts['replies']} batch or test replies; {len(pool)} distinct inputs + a 1 MB event every 25th), "
          f"{len(expected_keys)} objects each stored once, init {init_ms:.1f} ms, "
          f"RSS after 50: {(rss_at_50 or 0) / 1024:.1f} MiB, after {count}: {rss_end / 1024:.1f} MiB "
          f"({growth:+.1%}), peak {peak / 1024:.1f} MiB, failures: {len(failures)}")
    print(f"RSS (MiB) after each 100 invocations: {', '.join(trace)}")
    for failure in failures[:20]:
        print("  " + failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
