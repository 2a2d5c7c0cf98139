#!/usr/bin/env python3
"""The benchmark behind scripts/bench: our conversion core against the Python anchors, on the
same events, in one run on this machine; a size sweep; the release function end to end under
a Lambda Runtime API emulator (init, latency, RSS) beside the same job as a Python Lambda
(bench/python_lambda.py: pyarrow and boto3, under awslambdaric); and the release binary's size against
its target (bench/artifacts.py reports both architectures' sizes). Writes bench/RESULTS.md
(and prints it).

usage: run.py CONVERT_BIN BOOTSTRAP_BIN LOCAL_S3_BIN SHARED_BENCH_DIR WORK_DIR
              [--with-spark] [--bloat FILE]

Times are in-process, warm, median of REPEAT runs, the best of ROUNDS interleaved rounds (the
anchors' own measurement, and the `convert` example's for ours: event bytes -> the
uncompressed and the Snappy Parquet bytes, no network). Peak RSS is the whole process's: ours
as the `convert` example reads it (`VmHWM`), the anchors' from `wait4` (measured before this
script loads anything large, since a child's figure includes its parent's at fork)."""
import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import statistics
import sys

from emulator import Emulator, LocalS3

REPEAT = 15
# This 2-core VM has slow spells lasting seconds (every phase of ours, and the anchors, up to
# 1.5x slower; no steal time shown): each tool runs in ROUNDS interleaved rounds, and the best
# round's median is kept for each, so a spell cannot land on one side of a ratio only.
ROUNDS = 3
INVOKES = 50
INIT_SPAWNS = 20
# The Python Lambda takes about ten times as long: fewer of its invocations and spawns.
PY_INVOKES = 15
PY_SPAWNS = 5
ROOT = pathlib.Path(__file__).resolve().parents[1]


def timed(cmd):
    """stdout and peak RSS (MiB) of one run of cmd."""
    import tempfile
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read()
        if proc.returncode:
            sys.exit(f"{' '.join(map(str, cmd))} failed:\n{text}\n{err.read()}")
    return text, usage.ru_maxrss / 1024


def field(text, name):
    match = re.search(rf"{name}=([0-9.]+)", text)
    if not match:
        sys.exit(f"no {name} in: {text}")
    return float(match.group(1))


def cpu_model():
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def sweep_events(seed_6mb, work):
    """Prefixes of the 6 MB seed event's rows, of about 1 KB, 100 KB, 1 MB and 6 MB."""
    event = json.loads(seed_6mb.read_text())
    rows = event["rows"]
    per_row = len(seed_6mb.read_bytes()) / len(rows)
    out = []
    for label, size in [("1 KB", 1_000), ("100 KB", 100_000), ("1 MB", 1_000_000), ("6 MB", None)]:
        n = len(rows) if size is None else max(1, int(size / per_row))
        path = work / f"sweep-{n}.json"
        path.write_text(json.dumps({**event, "rows": rows[:n]}, separators=(",", ":")))
        out.append((label, n, path))
    return out


def table(header, rows):
    """A Markdown table: the header's cells, then each row's (already formatted)."""
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"
    return [line(header), line(["---"] * len(header))] + [line(r) for r in rows]


def replace_section(title, section):
    """Puts `section` (starting with the heading `title`) into bench/RESULTS.md in place of the
    section of that heading, or at the end."""
    results = ROOT / "bench" / "RESULTS.md"
    text = results.read_text() if results.exists() else ""
    if title in text:
        before, rest = text.split(title, 1)
        after = rest[rest.find("\n## "):] if "\n## " in rest else ""
        after = after.lstrip("\n")
        text = before + section.rstrip("\n") + "\n" + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results.write_text(text)


def report(lines):
    """Prints a section (its heading first) and, with `--results`, puts it in RESULTS.md."""
    section = "\n".join(lines) + "\n"
    print(section)
    if "--results" in sys.argv:
        replace_section(lines[0], section)


def arg(name, default):
    """The command-line value after `name`, of `default`'s type, or `default`."""
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def option(name):
    return pathlib.Path(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else None


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# The events measured: the shared generator's two 6 MB events, the seed, and ours below.
EVENTS = ["seed", "seed-6mb", "wide-6mb", "strings-20col"]
ROWS_20COL = 29_000


def strings_event(path):
    """20 string columns of mixed cardinality (2 values to every row distinct), 29,000 rows:
    just under Lambda's 6 MB payload; the shape dictionaries and string handling decide."""
    import random
    rng = random.Random(7)
    cardinality = [2, 3, 5, 8, 12, 20, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000,
                   ROWS_20COL, ROWS_20COL, ROWS_20COL, 7, 64]
    rows = []
    for i in range(ROWS_20COL):
        row = {}
        for c, n in enumerate(cardinality):
            v = rng.randrange(n) if n < ROWS_20COL else i
            row[chr(ord("a") + c)] = None if (i + c) % 29 == 0 else f"{'vxyz'[c % 4]}{v:x}" + "é"[: c % 10 == 0]
        rows.append(row)
    targets = [{"prefix": "s3://bench-bucket/out/parquet/", "compression": "uncompressed"},
               {"prefix": "s3://bench-bucket/out/parquet-snappy/", "compression": "snappy"}]
    path.write_text(json.dumps({"rows": rows, "targets": targets}, ensure_ascii=False, separators=(",", ":")))


def python_lambda():
    """The command and environment of bench/python_lambda.py as AWS's Python images run it."""
    here = pathlib.Path(__file__).resolve().parent
    return [sys.executable, "-m", "awslambdaric", "python_lambda.handler"], {"PYTHONPATH": str(here)}


def invocations(command, env, payload, count, name):
    """One fresh process answering `payload` `count` times: (p50 ms, p99 ms, peak RSS MiB, RSS
    after MiB)."""
    function = Emulator(command, env, timeout_s=60)
    try:
        latencies = []
        for _ in range(count):
            kind, body, ms = function.invoke(payload)
            if kind != "response":
                sys.exit(f"{name}: the function failed: {body}")
            latencies.append(ms)
        return (statistics.median(latencies), percentile(latencies, 99),
                function.peak_rss_kib() / 1024, function.rss_kib() / 1024)
    finally:
        function.stop()


def end_to_end(bootstrap, local_s3, events_dir, work):
    """Init (spawn to the first poll) over fresh processes, then per event a fresh process:
    INVOKES invocations (latency: event handed over to response posted, PUTs to the embedded
    S3 included) and the process's peak RSS; the same for the Python Lambda (PY_INVOKES)."""
    inits = {"ours": [], "python": []}
    python, python_env = python_lambda()
    for who, command, env, spawns in [("ours", bootstrap, {}, INIT_SPAWNS), ("python", python, python_env, PY_SPAWNS)]:
        for _ in range(spawns):
            function = Emulator(command, {**env, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"})
            inits[who].append(function.init_ms())
            function.stop()
    s3 = LocalS3(local_s3, work / "s3", buckets=["bench-bucket"])
    rows, python_rows = [], {}
    try:
        for name in EVENTS:
            payload = (events_dir / f"{name}.json").read_bytes()
            rows.append((name, *invocations(bootstrap, {"AWS_ENDPOINT_URL_S3": s3.endpoint}, payload, INVOKES, name)))
            python_rows[name] = invocations(python, {**python_env, "AWS_ENDPOINT_URL_S3": s3.endpoint},
                                            payload, PY_INVOKES, f"{name} (Python)")
    finally:
        s3.stop()
    return {who: (statistics.median(v), max(v)) for who, v in inits.items()}, rows, python_rows


def targets(results, e2e, python_e2e, init_ms, size):
    """Issue 34's targets and issue 14's, each with this run's figure and whether it was met
    (the streaming one is bench/stream.py's)."""
    by = {r["event"]: r for r in results}
    rows = []
    for event in EVENTS[1:3]:
        ratio = by[event]["pyarrow_ms"] / by[event]["ours_ms"]
        rows.append((34, f"{event}: conversion core at least 10× pyarrow", f"{ratio:.2f}×", ratio >= 10))
    for event in EVENTS[1:3]:
        parse_ms = by[event]["phases"][0]
        rate = by[event]["MB"] / parse_ms
        rows.append((34, f"{event}: parsing at 2 GB/s", f"{rate:.2f} GB/s over both cores ({parse_ms:.1f} ms)",
                     rate >= 2))
    for name, p50, *_ in e2e:
        if name in EVENTS[1:3]:
            ratio = python_e2e[name][0] / p50
            rows.append((34, f"{name}: end to end at least 20× the Python + pyarrow + boto3 Lambda (p50)",
                         f"{ratio:.1f}× ({p50:.1f} against {python_e2e[name][0]:.0f} ms)",
                         ratio >= 20))
    rows.append((34, "init (spawn to first poll) median under 10 ms", f"{init_ms:.1f} ms", init_ms < 10))
    peak = max(p for name, _, _, p, _ in e2e)
    rows.append((34, "peak RSS end to end under 48 MiB", f"{peak:.1f} MiB", peak < 48))
    bigger = [r["event"] for r in results if r["ours_snappy"] > r["pyarrow_snappy"]]
    rows.append((34, "Snappy object no larger than pyarrow's", "larger on " + ", ".join(bigger) if bigger else "every event",
                 not bigger))
    ratio = by["strings-20col"]["pyarrow_ms"] / by["strings-20col"]["ours_ms"]
    rows.append((14, "strings-20col: conversion core at least 5× pyarrow", f"{ratio:.2f}×", ratio >= 5))
    for name, p50, *_ in e2e:
        if name != "seed":
            rows.append((14, f"{name}: p50 end to end at most 50 ms", f"{p50:.1f} ms", p50 <= 50))
    rows.append((14, "stripped x86_64 binary under 10 MB (10,000,000 bytes)", f"{size:,}", size < 10_000_000))
    marked = [(issue, what, figure, "yes" if ok else "**no**") for issue, what, figure, ok in rows]
    return (["## Targets", "", "Issue 34's (performance, third round; streaming's are under "
             "\"Streaming a source object\") and issue 14's that still stand.", ""]
            + table(["issue", "target", "this run", "met"], marked) + [""])


def main():
    convert, bootstrap, local_s3, shared, work = (pathlib.Path(a) for a in sys.argv[1:6])
    with_spark = "--with-spark" in sys.argv
    bloat = option("--bloat")
    events_dir = work / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, shared / "gen_events.py", events_dir], check=True, capture_output=True)
    strings_event(events_dir / "strings-20col.json")
    anchors_out = work / "anchors"
    anchors_out.mkdir(exist_ok=True)

    results = []
    for name in EVENTS:
        event = events_dir / f"{name}.json"
        size_mb = event.stat().st_size / 1e6
        row = {"event": name, "MB": size_mb}
        for _ in range(ROUNDS):
            ours, _ = timed([convert, event, str(REPEAT)])
            if field(ours, "median_ms") < row.get("ours_ms", float("inf")):
                row.update({"ours_ms": field(ours, "median_ms"),
                            "ours_rss": field(ours, "peak_rss_kib") / 1024,
                            "ours_snappy": field(ours, "snappy"),
                            "phases": [field(ours, p) for p in ["parse_ms", "build_ms", "encode_ms"]]})
            for anchor in ["pyarrow", "polars", "duckdb"]:
                text, rss = timed([sys.executable, shared / f"anchor_{anchor}.py", event, anchors_out, str(REPEAT)])
                ms = field(text, "convert_median_s") * 1e3
                if ms < row.get(f"{anchor}_ms", float("inf")):
                    row[f"{anchor}_ms"] = ms
                    row[f"{anchor}_rss"] = rss
                if anchor == "pyarrow":
                    row["pyarrow_snappy"] = int(re.search(r"'snappy': (\d+)", text).group(1))
        if with_spark and name == "seed-6mb":
            text, _ = timed([sys.executable, shared / "anchor_pyspark.py", event, anchors_out])
            row["pyspark_ms"] = field(text, "convert_s") * 1e3
        results.append(row)

    sweep = []
    for label, n, path in sweep_events(events_dir / "seed-6mb.json", work):
        text, _ = timed([convert, path, str(REPEAT)])
        sweep.append((label, n, path.stat().st_size, field(text, "median_ms"), field(text, "peak_rss_kib") / 1024))

    inits, e2e, python_e2e = end_to_end(bootstrap, local_s3, events_dir, work)
    (init_ms, init_max), (py_init_ms, py_init_max) = inits["ours"], inits["python"]
    size = bootstrap.stat().st_size
    lines = [
        "# Benchmark results",
        "",
        f"One run of `scripts/bench` on {datetime.date.today()}, commit "
        f"`{subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}`, "
        f"CPU: {cpu_model()} ({os.cpu_count()} cores), {platform.machine()}.",
        "",
        "## Conversion core: event bytes to uncompressed and Snappy Parquet bytes (no network)",
        "",
        f"Warm, median of {REPEAT} in-process runs each, in {ROUNDS} interleaved rounds (ours, pyarrow, polars, "
        f"DuckDB, again), the best round's median kept for each (this VM has slow spells of seconds); "
        f"ratio = anchor time / our time (above 1: we are faster).",
        "",
    ]
    core = []
    for r in results:
        cells = [r["event"], f"{r['MB']:.2f}", f"{r['ours_ms']:.1f}", f"{r['MB'] / (r['ours_ms'] / 1e3):.0f}"]
        for anchor in ["pyarrow", "polars", "duckdb"]:
            cells += [f"{r[anchor + '_ms']:.1f}", f"{r[anchor + '_ms'] / r['ours_ms']:.2f}"]
        if with_spark:
            spark = r.get("pyspark_ms")
            cells += [f"{spark:.0f}", f"{spark / r['ours_ms']:.1f}"] if spark else ["", ""]
        core.append(cells)
    lines += table(["event", "MB", "ours ms", "MB/s", "pyarrow ms", "×pyarrow", "polars ms", "×polars",
                    "duckdb ms", "×duckdb"] + (["pyspark ms", "×pyspark"] if with_spark else []), core)
    lines += [
        "",
        "Where our time goes (median ms of each phase): parsing the event onto the tape, "
        "inferring the schema and building the Arrow batch, encoding both codecs in parallel:",
        "",
    ]
    lines += table(["event", "parse", "build", "encode"],
                   [[r["event"]] + [f"{p:.1f}" for p in r["phases"]] for r in results])
    lines += [
        "",
        "Peak RSS of the whole process (MiB; Python's includes its interpreter and imports):",
        "",
    ]
    lines += table(["event", "ours", "pyarrow", "polars", "duckdb"],
                   [[r["event"]] + [f"{r[who + '_rss']:.0f}" for who in ["ours", "pyarrow", "polars", "duckdb"]]
                    for r in results])
    lines += ["", "Snappy object size (bytes):", ""]
    lines += table(["event", "ours", "pyarrow"],
                   [[r["event"], f"{r['ours_snappy']:.0f}", r["pyarrow_snappy"]] for r in results])
    lines += ["", "## Sweep: prefixes of the 6 MB seed event", ""]
    lines += table(["size", "rows", "bytes", "ms", "µs per row", "peak RSS MiB"],
                   [[label, n, nbytes, f"{ms:.2f}", f"{ms * 1e3 / n:.2f}", f"{rss:.0f}"]
                    for label, n, nbytes, ms, rss in sweep])
    lines += [
        "",
        "## End to end: the release `bootstrap` under a Lambda Runtime API emulator",
        "",
        f"`bench/emulator.py` serves the Runtime API on loopback; the function writes to the embedded S3 "
        f"server (`examples/local-s3.rs`, release) over HTTP. Init = process spawn to its first "
        f"`/next` poll, with environment credentials: median {init_ms:.1f} ms, worst {init_max:.1f} ms "
        f"of {INIT_SPAWNS} spawns. Latency = event handed over to response posted (both PUTs "
        f"included), over {INVOKES} invocations of one warm process per event.",
        "",
    ]
    lines += table(["event", "p50 ms", "p99 ms", "peak RSS MiB", "RSS after MiB"],
                   [[name] + [f"{v:.1f}" for v in values] for name, *values in e2e])
    lines += [
        "",
        "The same job as a Python Lambda does it (`bench/python_lambda.py`: pyarrow `Table.from_pylist`, "
        "`write_table` per target, boto3 `put_object`), under the same emulator and S3 server through "
        f"awslambdaric, the runtime interface client of AWS's Python images; {PY_INVOKES} invocations of one "
        f"warm process per event. Its init (spawn to first poll, importing pyarrow and boto3 and building the "
        f"client): median {py_init_ms:.0f} ms, worst {py_init_max:.0f} ms of {PY_SPAWNS} spawns.",
        "",
    ]
    lines += table(["event", "p50 ms", "p99 ms", "peak RSS MiB", "RSS after MiB", "ours ×faster (p50)"],
                   [[name] + [f"{v:.1f}" for v in python_e2e[name]] + [f"{python_e2e[name][0] / p50:.1f}"]
                    for name, p50, *_ in e2e])
    lines += [""]
    lines += targets(results, e2e, python_e2e, init_ms, size)
    profile = ROOT / "bench" / "profile.md"
    if profile.exists():
        lines += [profile.read_text().rstrip(), ""]
    if bloat:
        lines += ["Largest crates in the x86_64 `.text` (`cargo bloat --profile bloat --crates`):", "", "```"]
        lines += [l for l in bloat.read_text().splitlines() if l.strip() and not l.startswith(("Compiling", "   Compiling"))]
        lines += ["```", ""]
    text = "\n".join(lines)
    # The sections other scripts write (streaming, fan-out) stay.
    kept = ""
    results_md = ROOT / "bench" / "RESULTS.md"
    if results_md.exists():
        old = results_md.read_text()
        starts = [old.find(t) for t in ("## Streaming a source object", "## Fan-out over a prefix") if t in old]
        if starts:
            kept = "\n" + old[min(starts):]
    results_md.write_text(text.rstrip("\n") + "\n" + kept)
    print(text)


if __name__ == "__main__":
    main()
