#!/usr/bin/env python3
"""The streaming benchmark behind scripts/bench: a source object of 100 MB and of 1 GB of NDJSON
(and the 1 GB one gzipped), and of 100 MB of CSV (the same rows), converted by the release
function under the Runtime API emulator, reading from and writing to the embedded S3 server,
against DuckDB, pyarrow and polars (and PySpark, as Glue runs it, on the 100 MB ones)
converting the same file to the same two Parquet files (uncompressed and Snappy), in one run.
Replaces the "Streaming a source object" section of bench/RESULTS.md (and prints it).

usage: stream.py BOOTSTRAP_BIN LOCAL_S3_BIN WORK_DIR [--small]   (--small: 100 MB only)

For each run: wall time, CPU time (user + system: per core, what a 1-vCPU Lambda pays for),
MB/s of input (wall, and per CPU-second), and the process's peak RSS (ours: the function
process alone, from spawn to answer, VmHWM; the anchors: the whole Python process, wait4)."""
import datetime
import gzip
import json
import os
import shutil
import pathlib
import subprocess
import sys
import tempfile
import time

from emulator import Emulator, LocalS3
from run import cpu_model, replace_section, table

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTION = "## Streaming a source object"
CITIES = ["New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Philadelphia", "San Antonio"]
SCHEMA = ("id BIGINT, name STRING, age BIGINT, city STRING, score DOUBLE, active BOOLEAN, "
          "signup STRING, note STRING")
# Peak RSS (MiB) of our runs in this benchmark's run at d90823e, before issue 34's round: its
# streaming target asks for no more memory than that.
BEFORE_PEAK = {"100 MB": 68, "1 GB": 73}
TARGETS = [{"prefix": "s3://out-bucket/bench/parquet/", "compression": "uncompressed"},
           {"prefix": "s3://out-bucket/bench/parquet-snappy/", "compression": "snappy"}]

ANCHORS = {"ndjson": {
    "duckdb": """
import duckdb, sys
src, out = sys.argv[1:3]
con = duckdb.connect()
for codec in ("uncompressed", "snappy"):
    con.execute(f"COPY (SELECT * FROM read_json('{src}', format='newline_delimited')) TO '{out}/duckdb-{codec}.parquet' (FORMAT parquet, COMPRESSION {codec})")
""",
    "pyarrow": """
import pyarrow.json as pj, pyarrow.parquet as pq, sys
src, out = sys.argv[1:3]
table = pj.read_json(src)
for codec in ("none", "snappy"):
    pq.write_table(table, f"{out}/pyarrow-{codec}.parquet", compression=codec)
""",
    # What the Glue job does (Glue runs PySpark): inferred schema, two writes. The JVM is not a
    # child Python waits for, so the script reports the JVM's own CPU time and peak RSS.
    "pyspark": """
import os, sys
from pyspark.sql import SparkSession
src, out = sys.argv[1:3]
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.host", "127.0.0.1").getOrCreate())
frame = spark.read.json(src)
for codec in ("none", "snappy"):
    frame.write.mode("overwrite").option("compression", codec).parquet(f"{out}/pyspark-{codec}")
pid = int(spark._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getName().split("@")[0])
ticks = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[11:13]
hwm = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")][0].split()[1]
print(f"jvm_cpu_s={sum(map(int, ticks)) / os.sysconf('SC_CLK_TCK')} jvm_peak_kib={hwm}")
spark.stop()
""",
    "polars": """
import polars as pl, sys
src, out = sys.argv[1:3]
for codec in ("uncompressed", "snappy"):
    pl.scan_ndjson(src).sink_parquet(f"{out}/polars-{codec}.parquet", compression=codec)
""",
}}
# The same conversions from CSV, types inferred as each reader infers them (Spark: header and
# inferSchema, the RFC 4180 escape).
ANCHORS["csv"] = {
    "duckdb": ANCHORS["ndjson"]["duckdb"].replace("read_json('{src}', format='newline_delimited')", "read_csv('{src}', header=true)"),
    "pyarrow": """
import pyarrow.csv as pc, pyarrow.parquet as pq, sys
src, out = sys.argv[1:3]
table = pc.read_csv(src)
for codec in ("none", "snappy"):
    pq.write_table(table, f"{out}/pyarrow-{codec}.parquet", compression=codec)
""",
    "pyspark": ANCHORS["ndjson"]["pyspark"].replace(
        "spark.read.json(src)",
        "spark.read.option('header', True).option('inferSchema', True).option('escape', '\"').csv(src)"),
    "polars": ANCHORS["ndjson"]["polars"].replace("pl.scan_ndjson(src)", "pl.scan_csv(src)"),
}


def generate(path, size, csv=False):
    """About `size` bytes of NDJSON (or CSV, with a header) rows of eight mixed-type columns;
    the row count."""
    rows, written = 0, 0
    with open(path, "w") as f:
        if csv:
            f.write("id,name,age,city,score,active,signup,note\n")
        while written < size:
            lines = []
            for i in range(rows, rows + 10_000):
                row = {"id": i, "name": f"customer-{i:09d}", "age": 18 + i % 70, "city": CITIES[i % 7],
                       "score": round((i * 7919 % 100_000) / 100, 2), "active": i % 3 == 0,
                       "signup": f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                       "note": None if i % 5 else f"call back, after {i % 17} days"}
                if csv:
                    note = "" if row["note"] is None else f'"{row["note"]}"'
                    lines.append(f"{i},{row['name']},{row['age']},{row['city']},{row['score']},"
                                 f"{str(row['active']).lower()},{row['signup']},{note}\n")
                else:
                    lines.append(json.dumps(row) + "\n")
            chunk = "".join(lines)
            f.write(chunk)
            written += len(chunk)
            rows += 10_000
    return rows


def ours(bootstrap, s3, key, size, schema):
    """One fresh function process converting s3://in-bucket/<key>: seconds, CPU seconds, peak MiB."""
    function = Emulator(bootstrap, {"AWS_ENDPOINT_URL_S3": s3.endpoint}, timeout_s=900)
    try:
        function.init_ms()
        event = {"source": {"uri": f"s3://in-bucket/{key}"}, "targets": TARGETS}
        if schema:
            event["schema"] = SCHEMA
        cpu = function.cpu_seconds()
        started = time.perf_counter()
        kind, body, _ = function.invoke(json.dumps(event).encode(), deadline_s=900)
        wall = time.perf_counter() - started
        cpu = function.cpu_seconds() - cpu
        if kind != "response":
            sys.exit(f"{key}: {body}")
        peak = function.peak_rss_kib() / 1024
    finally:
        function.stop()
    return wall, cpu, peak, body


def anchor(script, src, out):
    """Wall s, CPU s and peak MiB of the Python process running `script`, plus the JVM's when
    it reports them."""
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as said:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", script, str(src), str(out)],
                                stdout=said, stderr=err, env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            return None, err.read().strip().splitlines()[-1]
        said.seek(0)
        jvm = dict(w.split("=") for line in said for w in line.split() if w.startswith("jvm_"))
    cpu = usage.ru_utime + usage.ru_stime + float(jvm.get("jvm_cpu_s", 0))
    peak = usage.ru_maxrss / 1024 + float(jvm.get("jvm_peak_kib", 0)) / 1024
    return (wall, cpu, peak), None


def streaming_targets(rates):
    """Issue 34's streaming target for each NDJSON input and schema mode: ours against the
    anchor with the best MB/s per CPU-second, and peak RSS against BEFORE_PEAK."""
    rows = []
    for label, before in BEFORE_PEAK.items():
        anchors = {who: rate for (at, who), (rate, _) in rates.items() if at == label and not who.startswith("ours")}
        if not anchors:
            continue
        best = max(anchors, key=anchors.get)
        for mode in ("inferred", "declared"):
            rate, peak = rates[label, f"ours, {mode} schema"]
            ratio = rate / anchors[best]
            met = ratio >= 2 and peak <= before
            rows.append([label, mode, f"{ratio:.2f}× ({best})", f"{peak:.0f} ({before})", "yes" if met else "**no**"])
    return rows


def main():
    bootstrap, local_s3, work = (pathlib.Path(a) for a in sys.argv[1:4])
    sizes = [("100 MB", 100 * 10**6)] + ([] if "--small" in sys.argv else [("1 GB", 10**9)])
    root = work / "s3"
    (root / "in-bucket").mkdir(parents=True, exist_ok=True)
    out = work / "anchors-out"
    out.mkdir(exist_ok=True)
    rows_out, notes, rates = [], [], {}
    s3 = LocalS3(local_s3, root, buckets=("in-bucket", "out-bucket"))
    try:
        inputs = [(label, size, "ndjson") for label, size in sizes] + [("100 MB CSV", 100 * 10**6, "csv")]
        for label, size, fmt in inputs:
            key = f"bench-{label.replace(' ', '')}.{fmt}"
            path = root / "in-bucket" / key
            rows = generate(path, size, csv=fmt == "csv")
            mb = path.stat().st_size / 1e6
            runs = [("ours, inferred schema", ours(bootstrap, s3, key, mb, False)),
                    ("ours, declared schema", ours(bootstrap, s3, key, mb, True))]
            if size >= 10**9:
                gz_key = key + ".gz"
                subprocess.run(["gzip", "-k", "-1", "-f", str(path)], check=True)
                runs.append((f"ours, gzip (`-1`, {(root / 'in-bucket' / gz_key).stat().st_size / 1e6:.0f} MB), inferred",
                             ours(bootstrap, s3, gz_key, mb, False)))
                (root / "in-bucket" / gz_key).unlink()
            for who, (wall, cpu, peak, body) in runs:
                assert body["rows"] == rows, (who, body["rows"], rows)
                sizes_out = "/".join(f"{o['bytes'] / 1e6:.0f}" for o in body["objects"])
                rows_out.append([label, who, f"{wall:.1f}", f"{cpu:.1f}", f"{mb / wall:.0f}",
                                 f"{mb / cpu:.0f}", f"{peak:.0f}", sizes_out])
                rates[label, who] = (mb / cpu, peak)
            for name in ANCHORS[fmt]:
                if name == "pyspark" and size >= 10**9:
                    continue  # 100 MB gives its rate; 1 GB would add minutes
                result, error = anchor(ANCHORS[fmt][name], path, out)
                if result is None:
                    rows_out.append([label, name, "failed", "", "", "", "", ""])
                    notes.append(f"{name} on {label}: {error}")
                    continue
                wall, cpu, peak = result
                written = [out / f"{name}-{codec}{ext}" for codec in ("uncompressed", "none", "snappy")
                           for ext in (".parquet", "")]
                size_of = lambda p: p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*.parquet"))
                sizes_out = "/".join(f"{size_of(p) / 1e6:.0f}" for p in written if p.exists())
                for p in written:
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink(missing_ok=True)
                rows_out.append([label, name, f"{wall:.1f}", f"{cpu:.1f}", f"{mb / wall:.0f}",
                                 f"{mb / cpu:.0f}", f"{peak:.0f}", sizes_out])
                rates[label, name] = (mb / cpu, peak)
            path.unlink()
    finally:
        s3.stop()
    lines = [
        SECTION,
        "",
        f"One run of `bench/stream.py` on {datetime.date.today()}, commit "
        f"`{subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}`, "
        f"CPU: {cpu_model()} ({os.cpu_count()} cores). NDJSON rows of eight mixed-type columns "
        "(about 150 bytes each); every run writes an uncompressed and a Snappy Parquet file. "
        "Ours: the release `bootstrap` under the Runtime API emulator, reading the object from and "
        "writing the two objects (multipart) to the embedded S3 server over HTTP, default "
        "settings (row groups of 8 MiB, a sixteenth of the emulator's 128 MB, 8 MiB parts). Anchors: DuckDB `COPY (SELECT * FROM "
        "read_json(...)) TO ...` once per codec, pyarrow `read_json` + `write_table` twice, polars "
        "`scan_ndjson(...).sink_parquet(...)` once per codec, PySpark 3.5 (what Glue runs; 100 MB "
        "only) `spark.read.json` + two writes (for CSV: `read_csv`, `pyarrow.csv.read_csv`, "
        "`scan_csv`, `spark.read.csv` with `header` and `inferSchema`) on `local[2]`, on the same file from local disk. "
        "MB/s per CPU-s = input MB / (user + system seconds): throughput per core. Peak RSS: ours "
        "is the function process (spawn to answer); the anchors' the whole Python process "
        "(PySpark's: Python's plus the JVM's, CPU likewise).",
        "",
    ]
    lines += table(["input", "who", "wall s", "CPU s", "MB/s", "MB/s per CPU-s", "peak RSS MiB",
                    "output MB (uncompressed/snappy)"], rows_out)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    lines += ["", "Issue 34's streaming target: at least 2× the best anchor in MB/s per CPU-second, "
              "at no more peak RSS than before its round (d90823e's run).", ""]
    lines += table(["input", "ours", "×best anchor (MB/s per CPU-s)", "peak RSS MiB (before)", "met"],
                   streaming_targets(rates))
    section = "\n".join(lines) + "\n"
    replace_section(SECTION, section)
    print(section)


if __name__ == "__main__":
    main()
