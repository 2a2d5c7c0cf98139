#!/usr/bin/env python3
"""What a job's plan step costs as the prefix grows: OBJECTS three-byte objects under keys (as long as a
dated key of a real prefix) in the embedded S3 server, planned by the built function under the
Runtime API emulator, as template.yaml's Plan state invokes it. Prints the plan's time, its
size and the function's peak RSS (VmHWM), so docs/partitions-and-jobs.md can say how large a
prefix one plan takes at a given memory size.

usage: plan.py BOOTSTRAP_BIN LOCAL_S3_BIN WORK_DIR [--objects N ...]   (default 10000 50000)"""
import json
import pathlib
import sys

from emulator import Emulator, LocalS3

IN, OUT = "in-bucket", "out-bucket"


def sizes():
    if "--objects" not in sys.argv:
        return [10000, 50000]
    return [int(n) for n in sys.argv[sys.argv.index("--objects") + 1:]]


def main():
    bootstrap, local_s3, work = map(pathlib.Path, sys.argv[1:4])
    print("| objects | plan ms | plan.json bytes | bytes per object | peak RSS MiB |")
    print("| --- | --- | --- | --- | --- |")
    for n in sizes():
        s3 = LocalS3(local_s3, work / f"s3-{n}", buckets=(IN, OUT))
        folder = s3.root / IN / "in" / "events"
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"year=2024-month=01-day=01-part-{i:08d}.ndjson").write_bytes(b"{}\n")
        function = Emulator(bootstrap, {"AWS_ENDPOINT_URL_S3": s3.endpoint}, timeout_s=600)
        try:
            function.init_ms()
            event = {"plan": {"bucket": IN, "prefix": "in/events/", "output": f"s3://{OUT}/jobs/run/"}}
            kind, reply, ms = function.invoke(json.dumps(event).encode())
            assert kind == "response" and reply["plan"]["objects"] == n, reply
            size = (s3.root / OUT / "jobs" / "run" / "plan.json").stat().st_size
            print(f"| {n} | {ms:.0f} | {size} | {size / n:.0f} | {function.peak_rss_kib() / 1024:.1f} |")
        finally:
            function.stop()
            s3.stop()


if __name__ == "__main__":
    main()
