#!/usr/bin/env python3
"""Races: several invocations of the built function replacing one folder or one partition at
the same moment, each in a sandbox of its own (one `bootstrap` process per Runtime API
emulator, as Lambda runs concurrent invocations), against the embedded S3 server. Every round
is checked for a serial outcome: each target folder (partition) holds exactly one write's
complete output, the same write in every target, a write whose last delivery answered
success; the rest of the folder as the mode leaves it; no multipart upload and no lease left.

Rounds, each over a fresh pair of folders seeded with an earlier write:
- `overwrite_partitions` of one day (`partition_by: ["dt"]`), and `overwrite` of the whole
  folder, by 2 or 4 writers at once (inline rows and source objects mixed; half of the writers
  name the two targets in the other order);
- twins: one source object's notification delivered to 2 writers at once (append, the
  function's DEFAULT_TARGETS): every row once per target, whatever either answers;
- each of these with one writer SIGKILLed at a random moment (its deadline is short, as its
  lease's expiry follows it); its work is then delivered again, as Lambda retries it.
A writer that answers an error must name a retriable errorType; its work is delivered again
(with the same request id) until it succeeds, and the outcome is checked before and after.

usage: races.py BOOTSTRAP_BIN LOCAL_S3_BIN WORK_DIR [--rounds N] [--writers 2,4] [--kills N]
                [--rows N] [--source-rows N] [--twin-rows N] [--seed N] [--results]
  --rounds: rounds per mode and writer count; --kills: kill rounds per mode (2 writers);
  --source-rows: a source writer's rows; --twin-rows: the twins' object's (400,000: 40 MB).
  Exit status 1 when any round's outcome is not serial (the report says which)."""
import datetime
import json
import os
import pathlib
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from emulator import Emulator, LocalS3
from run import arg, cpu_model, report, table

SECTION = "## Races: concurrent overwrites"
IN, OUT = "in-bucket", "my-bucket"
DAY, OTHER_DAY = "2024-05-01", "2024-04-30"
# Errors a writer may answer in a race: its work is delivered again.
RETRIABLE = {"WriteConflict", "S3WriteFailed"}
LONG_DEADLINE_S, SHORT_DEADLINE_S = 60.0, 5.0
TWIN_DEFAULT = "out/twins"


def folders(round_name):
    base = f"out/races/{round_name}"
    return [(f"{base}/plain/", "uncompressed"), (f"{base}/snappy/", "snappy")]


def targets_of(pairs, reverse=False):
    targets = [{"prefix": f"s3://{OUT}/{key}", "compression": codec} for key, codec in pairs]
    return targets[::-1] if reverse else targets


def rows_of(writer, round_name, count, day):
    return [{"id": i, "dt": day, "writer": writer, "round": round_name, "s": "%032x" % (i * 7919 + writer)}
            for i in range(count)]


class Round:
    """One round: its writers' events and what each must leave."""

    def __init__(self, name, mode, events, rows, pairs, twins=False):
        self.name, self.mode, self.events, self.rows, self.pairs, self.twins = name, mode, events, rows, pairs, twins


class Races:
    def __init__(self, bootstrap, local_s3, work, seed):
        self.rng = random.Random(seed)
        self.s3 = LocalS3(local_s3, work / "s3", buckets=(IN, OUT))
        self.bootstrap = bootstrap
        self.env = {"AWS_ENDPOINT_URL_S3": self.s3.endpoint, "ALLOWED_PREFIXES": f"s3://{OUT}/out/",
                    "DEFAULT_TARGETS": json.dumps(targets_of(folders("twins"))),
                    "ROW_GROUP_ROWS": "20000"}
        self.sandboxes = []
        self.log = work / "function.log"
        self.kills = {"at random": 0, "holding a lease": 0}

    def sandbox(self, index):
        while len(self.sandboxes) <= index:
            self.sandboxes.append(None)
        if self.sandboxes[index] is None or self.sandboxes[index].proc.poll() is not None:
            self.sandboxes[index] = Emulator(self.bootstrap, self.env, timeout_s=LONG_DEADLINE_S,
                                             log=f"{self.log}.{index}.{time.monotonic_ns()}")
            self.sandboxes[index].init_ms()
        return self.sandboxes[index]

    def kill(self, index):
        self.sandboxes[index].stop()
        self.sandboxes[index] = None

    def stop(self):
        for sandbox in self.sandboxes:
            if sandbox is not None:
                sandbox.stop()
        self.s3.stop()

    def source(self, name, rows):
        key = f"in/races/{name}.ndjson"
        path = self.s3.root / IN / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        return key

    def seed(self, round_name, mode, pairs):
        """The earlier write a round replaces: the raced day and another day, appended."""
        rows = rows_of(-1, round_name, 50, DAY) + rows_of(-1, round_name, 50, OTHER_DAY)
        event = {"rows": rows, "partition_by": ["dt"], "targets": targets_of(pairs)}
        kind, body, _ = self.sandbox(0).invoke(json.dumps(event).encode())
        assert kind == "response", body

    def make(self, name, mode, writers, rows, source_rows, mixed):
        """Inline rows for every writer, or (`mixed`) a source object for every other one."""
        pairs = folders(name)
        self.seed(name, mode, pairs)
        events = []
        for w in range(writers):
            from_source = mixed and w % 2 == 1
            count = source_rows if from_source else rows
            written = rows_of(w, name, count, DAY)
            event = {"partition_by": ["dt"], "mode": mode, "targets": targets_of(pairs, reverse=w % 2 == 1)}
            if from_source:
                event["source"] = {"uri": f"s3://{IN}/{self.source(f'{name}-w{w}', written)}"}
            else:
                event["rows"] = written
            events.append((event, count))
        return Round(name, mode, events, rows, pairs)

    def make_twins(self, name, source_rows):
        rows = rows_of(0, name, source_rows, DAY)
        key = self.source(name, rows)
        note = {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                             "eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": IN}, "object": {"key": key}}}]}
        # The function's DEFAULT_TARGETS: one folder pair for every twin round, so each
        # round's object adds its own files beside the earlier rounds'.
        return Round(name, "append", [(note, source_rows), (note, source_rows)], source_rows,
                     folders("twins"), twins=True)

    def deliver(self, index, payload, request_id, deadline_s):
        sandbox = self.sandbox(index)
        return sandbox.submit(payload, request_id, deadline_s=deadline_s)

    def run(self, race, kill):
        """Runs one round; returns (outcome before retries, outcome after, details)."""
        n = len(race.events)
        payloads = [json.dumps(e).encode() for e, _ in race.events]
        victim = self.rng.randrange(n) if kill else None
        for i in range(n):
            self.sandbox(i)
        ids = [f"{race.name}-w{i}" for i in range(n)]
        for i in range(n):
            deadline = SHORT_DEADLINE_S if i == victim else LONG_DEADLINE_S
            self.deliver(i, payloads[i], ids[i], deadline)
        answers = [None] * n
        fate = None
        if victim is not None:
            # At a random moment, or as soon as it holds a lease (mid-commit: the others
            # must wait until its lease's time is past, then take it over).
            fate = self.rng.choice(["at random", "holding a lease"])
            end = time.monotonic() + (self.rng.uniform(0.0, 0.5) if fate == "at random" else 10)
            while time.monotonic() < end:
                got = self.sandboxes[victim].answer(ids[victim], 0.002)
                if got is not None:
                    answers[victim] = got
                    break
                if fate == "holding a lease" and self.holds_lease(ids[victim]):
                    break
            if answers[victim] is None:
                self.kill(victim)
                self.kills[fate] += 1
        with ThreadPoolExecutor(n) as pool:
            waits = {i: pool.submit(self.sandboxes[i].answer, ids[i], LONG_DEADLINE_S + 10)
                     for i in range(n) if answers[i] is None and self.sandboxes[i] is not None}
            for i, future in waits.items():
                answers[i] = future.result()
                if answers[i] is None:
                    raise RuntimeError(f"{race.name}: writer {i} did not answer")
        before = self.check(race, answers, final=False)
        errors = sorted({a[1].get("errorType") for a in answers if a and a[0] == "error"})
        # Lambda delivers failed and killed work again (same request id), one after the other.
        for attempt in range(10):
            pending = [i for i in range(n) if answers[i] is None or answers[i][0] == "error"]
            if not pending:
                break
            for i in pending:
                self.deliver(i, payloads[i], ids[i], LONG_DEADLINE_S)
                answers[i] = self.sandboxes[i].answer(ids[i], LONG_DEADLINE_S + 10)
        after = self.check(race, answers, final=True)
        return before, after, errors

    def holds_lease(self, request_id):
        """Whether the invocation `request_id` holds a lease now."""
        for path in (self.s3.root / OUT).rglob("_leases/**/_*"):
            try:
                if json.loads(path.read_text()).get("by") == request_id:
                    return True
            except (OSError, ValueError):
                pass  # released or being written meanwhile
        return False

    def taken_over(self):
        """How many times the function logged taking over a lease whose holder's time had
        passed."""
        return sum(p.read_text().count("took over a lease") for p in self.log.parent.glob(self.log.name + ".*"))

    def listed(self, prefix):
        base = self.s3.root / OUT
        folder = base / prefix
        return sorted(p for p in folder.rglob("*") if p.is_file()
                      and not any(part.startswith(".") for part in p.relative_to(base).parts))

    def check(self, race, answers, final):
        """The round's outcome: "serial", or what is wrong."""
        import pyarrow.parquet as pq

        succeeded = {i for i, a in enumerate(answers) if a and a[0] == "response"}
        bad = [a[1] for a in answers if a and a[0] == "error" and a[1].get("errorType") not in RETRIABLE]
        if bad:
            return f"non-retriable error: {bad[0]}"
        problems, winners = [], set()
        for prefix, _ in race.pairs:
            files = self.listed(prefix)
            leases = [p for p in files if "_leases" in p.parts]
            if final and leases:
                problems.append(f"{prefix}: {len(leases)} lease object(s) left")
            data = [p for p in files if p.suffix == ".parquet"]
            by_writer, other_day = {}, 0
            for path in data:
                # The day is the Hive folder's (dt=...), not a column of the file.
                day = next((part[3:] for part in path.parts if part.startswith("dt=")), None)
                for row in pq.read_table(path, columns=["id", "writer", "round"]).to_pylist():
                    if row["round"] != race.name:
                        continue  # an earlier twin round's, in the same folders
                    if day == OTHER_DAY:
                        other_day += 1
                    else:
                        by_writer.setdefault(row["writer"], []).append(row["id"])
            if race.twins:
                # All or nothing: every row once when a delivery answered success, else none.
                ids = sorted(by_writer.get(0, []))
                whole = ids == list(range(race.rows))
                if not whole and (final or succeeded or ids):
                    problems.append(f"{prefix}: {len(ids)} rows, {len(set(ids))} distinct of {race.rows}"
                                    f" ({len(succeeded)} deliveries answered success)")
                continue
            if race.mode == "overwrite_partitions" and other_day != 50:
                problems.append(f"{prefix}: the other day holds {other_day} rows, not its 50")
            if race.mode == "overwrite" and other_day:
                problems.append(f"{prefix}: {other_day} rows of the replaced write's other day left")
            if len(by_writer) != 1:
                problems.append(f"{prefix}: rows of writers {sorted(by_writer)} (" +
                                ", ".join(f"{w}: {len(r)}" for w, r in sorted(by_writer.items())) + ")")
                continue
            (writer, rows), = by_writer.items()
            want = race.events[writer][1] if writer >= 0 else 50
            if len(rows) != want:
                problems.append(f"{prefix}: writer {writer}'s {len(rows)} rows of {want}")
            winners.add(writer)
        if not race.twins and len(winners) > 1:
            problems.append(f"different writers in the targets: {sorted(winners)}")
        if not race.twins and winners and not winners & succeeded:
            problems.append(f"the folder holds writer {sorted(winners)}'s write, which did not answer success")
        if final and self.s3.uploads():
            problems.append(f"{len(self.s3.uploads())} multipart upload(s) left")
        return "; ".join(problems) or "serial"


def main():
    bootstrap, local_s3, work = map(pathlib.Path, sys.argv[1:4])
    work.mkdir(parents=True, exist_ok=True)
    rounds, kills = arg("--rounds", 10), arg("--kills", 4)
    writer_counts = [int(w) for w in arg("--writers", "2,4").split(",")]
    rows, source_rows = arg("--rows", 2000), arg("--source-rows", 60000)
    twin_rows = arg("--twin-rows", source_rows)
    seed = arg("--seed", 1)
    races = Races(bootstrap, local_s3, work, seed)
    results, failures = [], []
    started = time.perf_counter()
    try:
        plan = []
        for mode in ["overwrite_partitions", "overwrite"]:
            for writers in writer_counts:
                plan += [(mode, writers, False)] * rounds
            plan += [(mode, 2, True)] * kills
        plan += [("twins", 2, False)] * max(1, rounds // 2) + [("twins", 2, True)] * max(1, kills // 2)
        for n, (mode, writers, kill) in enumerate(plan):
            name = f"r{n:03d}"
            race = (races.make_twins(name, twin_rows) if mode == "twins"
                    else races.make(name, mode, writers, rows, source_rows, mixed=n % 2 == 1))
            round_started = time.perf_counter()
            before, after, errors = races.run(race, kill)
            results.append((mode, writers, kill, before, after, errors))
            if after != "serial" or before != "serial" and not kill:
                failures.append(f"{name} {mode} x{writers}{' kill' if kill else ''}: before retries: {before}; after: {after}")
            print(f"{name} {mode} x{writers}{' kill' if kill else ''} ({time.perf_counter() - round_started:.1f} s): "
                  f"{before} | after retries: {after}"
                  f"{' | errors: ' + ', '.join(errors) if errors else ''}", flush=True)
        kills, taken_over = dict(races.kills), races.taken_over()
    finally:
        races.stop()
    wall = time.perf_counter() - started
    header = ["mode", "writers", "kill", "rounds", "serial at once", "serial after retries", "errors answered"]
    rows_out = []
    for key in sorted({(m, w, k) for m, w, k, *_ in results}):
        mine = [r for r in results if r[:3] == key]
        errors = sorted({e for r in mine for e in r[5]})
        rows_out.append([key[0], key[1], "yes" if key[2] else "no", len(mine),
                         sum(r[3] == "serial" for r in mine), sum(r[4] == "serial" for r in mine),
                         ", ".join(errors) or "none"])
    lines = [SECTION, "",
             f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores: `bench/races.py` (seed {seed}, "
             f"{rows:,} inline rows or a {source_rows:,}-row source object per writer, two targets; twins: "
             f"one {twin_rows:,}-row object's notification delivered to two sandboxes at once), "
             f"{len(results)} rounds in {wall:.0f} s; {kills['at random']} writers SIGKILLed at a random moment, "
             f"{kills['holding a lease']} as soon as they held a lease (mid-commit); {taken_over} leases taken over "
             "once their killed holder's time had passed. \"Serial at once\": the folders right after every "
             "writer answered (a killed writer's work not yet delivered again); \"after retries\": once every "
             "failed or killed writer's work was delivered again until it succeeded.", ""]
    lines += table(header, rows_out)
    if failures:
        lines += ["", "Not serial:", ""] + [f"- {f}" for f in failures[:20]]
    report(lines)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
