#!/usr/bin/env python3
"""Chaos: the built function killed at random moments while it converts many source objects,
and each piece of work delivered again until it succeeds, as S3 notifications, EventBridge and
SQS deliver again after a crash. Then nothing may be left but the right objects: every input
row in exactly one object per target, no incomplete multipart upload, no stray object.

The work: S3 notifications of single objects (to DEFAULT_TARGETS), direct `source` events with
`partition_by` (files per day), and Distributed Map batches of three objects; some objects are
large enough for multipart uploads. Each attempt is one of: left alone; SIGKILLed at a random
moment; SIGKILLed as soon as an upload is open (the case the issue started from); given a short
deadline, and SIGKILLed if it has not answered when the deadline passes (as Lambda does). A
killed process is replaced by a new one (a new sandbox), and the same event is delivered again,
with the same request id (as Lambda's retries of an asynchronous invocation carry it). Last,
a few objects are killed once and never delivered again (a synchronous caller that gave up):
their uploads stay until the sweep, which must leave them while they are younger than the
function's timeout and abort them after.

usage: chaos.py BOOTSTRAP_BIN LOCAL_S3_BIN WORK_DIR [--objects N] [--rows N] [--big N]
                [--abandoned N] [--seed N] [--results]   (--results: replace the "Chaos"
                section of bench/RESULTS.md)"""
import datetime
import json
import os
import pathlib
import random
import subprocess
import sys
import time

from emulator import Emulator, LocalS3
from run import arg, cpu_model, report, table

SECTION = "## Chaos: kills and redelivery"
IN, OUT = "in-bucket", "my-bucket"
DAYS = [f"2024-01-{d:02d}" for d in range(1, 5)]
DEFAULT_TARGETS = [{"prefix": f"s3://{OUT}/out/chaos/", "compression": "uncompressed"},
                   {"prefix": f"s3://{OUT}/out/chaos-snappy/", "compression": "snappy"}]
DAILY_TARGETS = [{"prefix": f"s3://{OUT}/out/chaos-daily/", "compression": "snappy"}]
BATCH_TARGETS = [{"prefix": f"s3://{OUT}/out/chaos-batch/", "compression": "zstd"}]
# Small row groups, so that a large object's parts go up while it is still being read.
ROW_GROUP_ROWS = 20_000
# Attempts after which the work is left alone (so every piece of work ends).
WILD_ATTEMPTS = 5


def generate(root, name, first_id, rows, rng):
    """An NDJSON object of `rows` rows with ids from `first_id`; its key."""
    key = f"in/chaos/{name}.ndjson"
    path = root / IN / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i in range(first_id, first_id + rows):
            f.write(json.dumps({"id": i, "dt": DAYS[i % len(DAYS)],
                                "s": "%048x" % rng.getrandbits(192)}) + "\n")
    return key


def notification(key):
    return {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                         "eventName": "ObjectCreated:Put",
                         "s3": {"bucket": {"name": IN}, "object": {"key": key}}}]}


class Work:
    """One piece of work: its event, the targets it writes, and the row ids it holds."""

    def __init__(self, kind, event, targets, ids, big):
        self.kind, self.event, self.targets, self.ids, self.big = kind, event, targets, ids, big
        self.payload = json.dumps(event).encode()


class Chaos:
    def __init__(self, bootstrap, s3, rng):
        self.bootstrap, self.s3, self.rng = bootstrap, s3, rng
        self.env = {"AWS_ENDPOINT_URL_S3": s3.endpoint, "DEFAULT_TARGETS": json.dumps(DEFAULT_TARGETS),
                    "ALLOWED_PREFIXES": f"s3://{OUT}/out/", "ROW_GROUP_ROWS": str(ROW_GROUP_ROWS)}
        self.function = None
        self.counts = {"invocations": 0, "sigkill at random": 0, "sigkill with uploads open": 0,
                       "sigkill at the deadline": 0, "short deadlines": 0, "answered an error": 0,
                       "write conflicts": 0,
                       "processes": 0}
        self.left_by_kills = set()

    def start(self):
        self.function = Emulator(self.bootstrap, self.env, timeout_s=120)
        self.function.init_ms()
        self.counts["processes"] += 1

    def kill(self, why):
        """SIGKILL, as Lambda ends a sandbox; the next delivery gets a new process."""
        self.function.stop()
        self.counts[why] += 1
        self.left_by_kills |= self.s3.uploads()
        self.start()

    def attempt(self, work, request_id, fate):
        """One delivery: its answer, or None when the process was killed."""
        self.counts["invocations"] += 1
        f = self.function
        if fate == "deadline":
            self.counts["short deadlines"] += 1
            deadline = self.rng.uniform(3.05, 4.0)
            request_id = f.submit(work.payload, request_id, deadline_s=deadline)
            answer = f.answer(request_id, deadline + 0.3)
            if answer is None:
                self.kill("sigkill at the deadline")
            return answer
        request_id = f.submit(work.payload, request_id)
        if fate == "random":
            answer = f.answer(request_id, self.rng.uniform(0.0, 2.0 if work.big else 0.4))
            if answer is None:
                self.kill("sigkill at random")
            return answer
        if fate == "uploads":
            before = self.s3.uploads()
            end = time.monotonic() + 120
            while time.monotonic() < end:
                answer = f.answer(request_id, 0.005)
                if answer is not None:
                    return answer
                if self.s3.uploads() - before:
                    self.kill("sigkill with uploads open")
                    return None
            raise RuntimeError(f"{work.kind}: no answer and no upload within 120 s")
        answer = f.answer(request_id, 135)
        if answer is None:
            raise RuntimeError(f"{work.kind}: no answer within 120 s (exit {f.proc.poll()})")
        return answer

    def until_done(self, work):
        """Delivers `work` until it succeeds; its reply."""
        request_id = f"chaos-{self.rng.getrandbits(64):016x}"
        for n in range(20):
            if n == 0 and work.big:
                fate = "uploads"
            elif n < WILD_ATTEMPTS:
                fate = self.rng.choice(["none", "random", "random", "uploads" if work.big else "random", "deadline"])
            else:
                fate = "none"
            answer = self.attempt(work, request_id, fate)
            if answer is None:
                continue
            kind, body, _ = answer
            if kind == "response":
                return body
            self.counts["answered an error"] += 1
            # The deadline may fail it (the function gave up in time and cleaned up); and a
            # killed predecessor's lease on the same work makes it wait until that lease's time
            # is past, which a short deadline does not reach (WriteConflict, retriable).
            if body["errorType"] == "WriteConflict":
                self.counts["write conflicts"] += 1
                continue
            assert fate == "deadline" and body["errorType"] == "S3WriteFailed", (work.kind, fate, body)
        raise RuntimeError(f"{work.kind} never succeeded")


def listed_uploads(s3):
    """The uploads in progress in the output bucket, as S3's ListMultipartUploads names them."""
    out = subprocess.run(["aws", "s3api", "list-multipart-uploads", "--endpoint-url", s3.endpoint,
                          "--bucket", OUT, "--output", "json"], check=True, capture_output=True,
                         text=True, env={**os.environ, "AWS_ACCESS_KEY_ID": "local-test-key",
                                         "AWS_SECRET_ACCESS_KEY": "local-test-secret",
                                         "AWS_REGION": "us-east-1"}).stdout
    return [u["Key"] for u in json.loads(out or "{}").get("Uploads", [])]


def written_keys(reply):
    """Every object a successful reply names, as `bucket/key`."""
    results = reply.get("results", [reply])
    return {f"{o['bucket']}/{o['key']}" for r in results for o in r["objects"]}


def stored_keys(root):
    base = root / OUT
    return {f"{OUT}/{p.relative_to(base)}" for p in base.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(base).parts)}


def verify(root, works, replies):
    """Every row of every piece of work once in each of its targets, and nothing else there."""
    import pyarrow.parquet as pq

    expected = set()
    for reply in replies:
        expected |= written_keys(reply)
    stored = stored_keys(root)
    assert stored == expected, f"stray: {sorted(stored - expected)[:5]}, missing: {sorted(expected - stored)[:5]}"
    rows = 0
    for targets in {json.dumps(w.targets) for w in works}:
        mine = [w for w in works if json.dumps(w.targets) == targets]
        want = sorted(i for w in mine for i in w.ids)
        for target in json.loads(targets):
            folder = root / OUT / target["prefix"].split("/", 3)[3]
            got = []
            for path in sorted(folder.rglob("*.parquet")):
                got += pq.read_table(path, columns=["id"]).column("id").to_pylist()
            assert sorted(got) == want, f"{target['prefix']}: {len(got)} rows, {len(set(got))} distinct, {len(want)} expected"
            rows += len(got)
    return rows


def main():
    bootstrap, local_s3, work_dir = map(pathlib.Path, sys.argv[1:4])
    objects, rows, big = arg("--objects", 100), arg("--rows", 200), arg("--big", 10)
    abandoned, seed = arg("--abandoned", 3), arg("--seed", 1)
    big_rows = 330_000  # about 30 MB of NDJSON: parts go up while it is read
    rng = random.Random(seed)
    s3 = LocalS3(local_s3, work_dir / "s3", buckets=(IN, OUT))
    chaos = Chaos(bootstrap, s3, rng)
    try:
        works, next_id, batch = [], 0, []
        # Large objects spread over every kind of work: a partitioned source, a batch's, a
        # notification's.
        step = max(1, objects // max(1, big))
        bigs = {min(objects - 1, i * step + (3, 4, 2)[i % 3]) for i in range(big)}
        for o in range(objects):
            size = big_rows if o in bigs else rows
            key = generate(s3.root, f"o{o:04d}", next_id, size, rng)
            ids = range(next_id, next_id + size)
            next_id += size
            if o % 5 == 3:
                event = {"source": {"uri": f"s3://{IN}/{key}"}, "partition_by": ["dt"],
                         "targets": DAILY_TARGETS}
                works.append(Work("partitioned source", event, DAILY_TARGETS, ids, size > rows))
            elif o % 5 == 4 or batch:
                batch.append((key, ids, size > rows))
                if len(batch) == 3 or o == objects - 1:
                    event = {"Items": [{"Key": k, "Etag": "\"0\"", "Size": 1} for k, _, _ in batch],
                             "BatchInput": {"bucket": IN, "targets": BATCH_TARGETS}}
                    all_ids = [i for _, ids_, _ in batch for i in ids_]
                    works.append(Work("map batch", event, BATCH_TARGETS, all_ids, any(b for _, _, b in batch)))
                    batch = []
            else:
                works.append(Work("notification", notification(key), DEFAULT_TARGETS, ids, size > rows))
        input_bytes = sum(p.stat().st_size for p in (s3.root / IN).rglob("*.ndjson"))
        started = time.perf_counter()
        chaos.start()
        replies = [chaos.until_done(w) for w in works]
        wall = time.perf_counter() - started
        left_after_retries = len(s3.uploads())
        assert left_after_retries == 0, f"uploads left after every piece of work succeeded: {listed_uploads(s3)}"
        checked = verify(s3.root, works, replies)
        c, left_by_kills = dict(chaos.counts), len(chaos.left_by_kills)

        # Work that is never delivered again: its uploads wait for the sweep.
        keys = [generate(s3.root, f"abandoned-{a}", next_id + a * big_rows, big_rows, rng)
                for a in range(abandoned)]
        for key in keys:
            answer = chaos.attempt(Work("abandoned", notification(key), DEFAULT_TARGETS, [], True), None, "uploads")
            assert answer is None, f"{key} was converted before an upload opened: {answer}"
        orphans = len(s3.uploads())
        last_kill = time.monotonic()
        assert orphans >= abandoned, f"the abandoned work left {orphans} uploads"
        sweep = json.dumps({"sweep": {}}).encode()
        deadline = 10.0
        kind, early, _ = chaos.function.invoke(sweep, deadline_s=deadline)
        assert kind == "response" and early["swept"]["aborted"] == 0, early
        assert early["swept"]["kept"] == orphans, early
        # The sweep leaves uploads younger than its timeout (the deadline) plus 5 s.
        time.sleep(max(0.0, last_kill + deadline + 6 - time.monotonic()))
        kind, swept, _ = chaos.function.invoke(sweep, deadline_s=deadline)
        assert kind == "response", swept
        assert swept["swept"]["aborted"] == orphans and swept["swept"]["complete"], swept
        assert not s3.uploads(), f"{len(s3.uploads())} uploads left after the sweep"
        assert stored_keys(s3.root) == set().union(*map(written_keys, replies)), "the abandoned work left objects"
        assert not listed_uploads(s3), listed_uploads(s3)
    finally:
        if chaos.function:
            chaos.function.stop()
        s3.stop()
    kills = c["sigkill at random"] + c["sigkill with uploads open"] + c["sigkill at the deadline"]
    large = sorted({w.kind for w in works if w.big})
    header = ["work", "objects (large)", "input MB", "invocations", "kills: random / uploads open / deadline",
              "short deadlines", "errors answered (WriteConflict)", "retries", "uploads left by kills", "left after retries",
              "rows checked", "stray objects", "abandoned: uploads kept / swept", "wall s"]
    row = [len(works), f"{objects} ({big})", f"{input_bytes / 1e6:.0f}", c["invocations"],
           f"{c['sigkill at random']} / {c['sigkill with uploads open']} / {c['sigkill at the deadline']}",
           c["short deadlines"], f"{c['answered an error']} ({c['write conflicts']})", c["invocations"] - len(works), left_by_kills, left_after_retries,
           f"{checked:,}", 0, f"{early['swept']['kept']} / {swept['swept']['aborted']}", f"{wall:.0f}"]
    lines = [SECTION, "",
             f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores: `scripts/chaos` (bench/chaos.py, "
             f"seed {seed}): {len(works)} pieces of work (S3 notifications, partitioned `source` events, map "
             f"batches of three) over {objects} NDJSON objects, {big} of them about 30 MB (in {', '.join(large)}), each delivered "
             f"until it succeeded while {kills} SIGKILLs hit the function at random moments, with uploads "
             "open, or when its deadline passed (a process that has not answered 0.3 s after it, as "
             "Lambda ends it; short deadlines of 3.05-4 s leave the function 0.05-1 s before its 3 s "
             "clean-up reserve). Then every row was read back once per target, the "
             "folders held exactly the objects the replies named, and no multipart upload was left; "
             f"{abandoned} more object{'s' if abandoned != 1 else ''} killed once and never delivered again, and the sweep kept "
             "their uploads while they were young and aborted them after.", ""]
    lines += table(header, [row])
    report(lines)


if __name__ == "__main__":
    main()
