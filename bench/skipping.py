#!/usr/bin/env python3
"""Files that readers skip through: a 100 MB NDJSON source object converted by the release
function (under the Runtime API emulator, with the embedded S3 server) with each of the
reader-side options and without, then the same selective queries timed in DuckDB, DataFusion
(a reader that prunes pages by the page index, as Spark, Trino and Athena do) and pyarrow over
each file, with the bytes each read where the reader says (DuckDB's profiler
`total_bytes_read`, DataFusion's `bytes_scanned`; for pyarrow, the bytes a counting file system
handed out). Replaces the "Files that readers skip through" section of bench/RESULTS.md (and
prints it).

usage: skipping.py BOOTSTRAP_BIN LOCAL_S3_BIN WORK_DIR

The files (Snappy) differ only in the option: `default` (page index, rows in arrival order),
`bloom` (`bloom_filter_columns: ["id"]`), `sort` (`sort_by: ["ts"]`: each row group sorted),
`bloom+sort`; and, to isolate the page index itself, the default file's rows rewritten by
pyarrow twice with the same row groups and page size, with and without the page index
(our function always writes it). Queries: an equality filter on `id` (unique, scrambled), a
value present and one absent; a range filter on `ts` (10 minutes of a year, about 20 rows).
Times are the median of 7 runs each, warm (the file in the page cache), one thread; the write
cost is the median CPU time of 3 conversions per option, in alternating rounds."""
import datetime
import json
import pathlib
import re
import statistics
import sys
import tempfile
import time

import datafusion
import duckdb
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from emulator import Emulator, LocalS3
from run import cpu_model, replace_section, table

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTION = "## Files that readers skip through"
SCHEMA = "id BIGINT, ts TIMESTAMP, user STRING, city STRING, amount DOUBLE, note STRING"
CITIES = ["Paris", "Lyon", "Nice", "Lille", "Nantes", "Rennes", "Brest"]
START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
STEP_S = 30
VARIANTS = {"default": {}, "bloom": {"bloom_filter_columns": ["id"]}, "sort": {"sort_by": ["ts"]},
            "bloom+sort": {"bloom_filter_columns": ["id"], "sort_by": ["ts"]}}
RUNS = 7
ROUNDS = 3


def row_id(i):
    """Row `i`'s id: unique (an odd multiplier is a bijection mod 2^32) and scrambled."""
    return (i * 2_654_435_761) % (1 << 32)


def generate(path, size):
    """About `size` bytes of NDJSON; the row count. Timestamps 30 s apart over the rows, in a
    scrambled arrival order (the step 7,919 is prime and the count is kept coprime to it)."""
    rows = 0
    with open(path, "w") as f:
        while rows * 118 < size:
            rows += 10_000
        rows += 1 if rows % 7_919 == 0 else 0
        for first in range(0, rows, 10_000):
            lines = []
            for i in range(first, min(first + 10_000, rows)):
                ts = START + datetime.timedelta(seconds=STEP_S * ((i * 7_919) % rows))
                lines.append(json.dumps({"id": row_id(i), "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                         "user": f"user-{i % 50_000:05d}", "city": CITIES[i % 7],
                                         "amount": round(i % 100_000 / 7, 2),
                                         "note": None if i % 4 else f"order {i} delivered late"}) + "\n")
            f.write("".join(lines))
    return rows


def convert(bootstrap, s3, options):
    """The Snappy file the function writes with `options`: its path, and the CPU seconds."""
    function = Emulator(bootstrap, {"AWS_ENDPOINT_URL_S3": s3.endpoint}, timeout_s=900)
    try:
        function.init_ms()
        event = {"source": {"uri": "s3://in-bucket/skip/source.ndjson"}, "schema": SCHEMA,
                 "targets": [{"prefix": "s3://out-bucket/skip/", "compression": "snappy"}], **options}
        cpu = function.cpu_seconds()
        kind, body, _ = function.invoke(json.dumps(event).encode(), deadline_s=900)
        cpu = function.cpu_seconds() - cpu
        if kind != "response":
            sys.exit(f"{options}: {body}")
    finally:
        function.stop()
    obj = body["objects"][0]
    return s3.root / obj["bucket"] / obj["key"], cpu


class Counting:
    """A file whose reads are counted: what pyarrow fetched."""

    def __init__(self, file):
        self.file = file
        self.read_bytes = 0

    def read(self, n=-1):
        data = self.file.read(n)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer):
        n = self.file.readinto(buffer)
        self.read_bytes += n
        return n

    def __getattr__(self, name):
        return getattr(self.file, name)


class CountingFileSystem(LocalFileSystem):
    """The local file system, each file it opens counted."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.opened = []

    def _open(self, path, mode="rb", **kwargs):
        file = Counting(super()._open(path, mode, **kwargs))
        self.opened.append(file)
        return file


def duckdb_query(con, profile, path, where):
    """Median seconds, bytes read, rows, row groups scanned of `SELECT * ... WHERE where`;
    `profile` is where `con` writes its JSON profile."""
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        found = con.execute(f"SELECT * FROM read_parquet('{path}') WHERE {where}").fetchall()
        times.append(time.perf_counter() - started)
    profile = json.loads(profile.read_text())
    scan = next(iter(walk(profile, "TABLE_SCAN")))
    groups = f"{scan['row_groups_scanned']}/{scan['total_row_groups_to_scan']}"
    return statistics.median(times), profile["io"]["total_bytes_read"], len(found), groups


def walk(node, kind):
    for child in node.get("children", node.get("operator", [])):
        if child.get("type") == kind:
            yield child
        yield from walk(child, kind)


def pyarrow_query(path, expression):
    """Median seconds, bytes read and rows of reading `path` filtered by `expression`."""
    times, read = [], 0
    for _ in range(RUNS):
        counted = CountingFileSystem(skip_instance_cache=True)
        files = pafs.PyFileSystem(pafs.FSSpecHandler(counted))
        started = time.perf_counter()
        found = ds.dataset(str(path), format="parquet", filesystem=files).to_table(
            filter=expression, use_threads=False)
        times.append(time.perf_counter() - started)
        read = sum(f.read_bytes for f in counted.opened)
    return statistics.median(times), read, found.num_rows


def datafusion_query(path, where):
    """Median seconds, bytes scanned, rows, and pages kept of all pages (the page index's
    pruning) of `SELECT * ... WHERE where`."""
    config = datafusion.SessionConfig().with_target_partitions(1)
    context = datafusion.SessionContext(config.set("datafusion.execution.parquet.pushdown_filters", "true"))
    context.register_parquet("f", str(path))
    query = f"SELECT * FROM f WHERE {where}"
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        found = sum(batch.num_rows for batch in context.sql(query).collect())
        times.append(time.perf_counter() - started)
    plan = context.sql("EXPLAIN ANALYZE " + query).collect()[0].column(1)[0].as_py()
    metric = lambda name: re.search(name + r"=([^,\]]+)", plan).group(1).strip()
    scanned = metric("bytes_scanned")
    number, unit = re.fullmatch(r"([0-9.]+)\s*([KMG]?)", scanned).groups()
    scanned = float(number) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[unit]
    total, kept = re.fullmatch(r"(\d+) total → (\d+) matched", metric("page_index_pages_pruned")).groups()
    return statistics.median(times), scanned, found, f"{kept}/{total}" if int(total) else "no index"


def main():
    bootstrap, local_s3, work = sys.argv[1:4]
    work = pathlib.Path(work)
    with tempfile.TemporaryDirectory(dir=work) as root:
        s3 = LocalS3(local_s3, root, buckets=("in-bucket", "out-bucket"))
        try:
            source = pathlib.Path(root) / "in-bucket" / "skip" / "source.ndjson"
            source.parent.mkdir(parents=True)
            rows = generate(source, 100 * 10**6)
            size = source.stat().st_size
            files, costs = {}, {name: [] for name in VARIANTS}
            for _ in range(ROUNDS):
                for name, options in VARIANTS.items():
                    path, cpu = convert(bootstrap, s3, options)
                    files[name] = work / f"skip-{name}.parquet"
                    files[name].write_bytes(path.read_bytes())
                    costs[name].append(cpu)
            costs = {name: statistics.median(cpus) for name, cpus in costs.items()}
        finally:
            s3.stop()
    # The page index alone: the same rows and row groups, pyarrow's writer both times.
    default = pq.ParquetFile(files["default"])
    groups = [default.metadata.row_group(g).num_rows for g in range(default.metadata.num_row_groups)]
    for name, index in (("pyarrow, no page index", False), ("pyarrow, page index", True)):
        files[name] = work / f"skip-{name.replace(', ', '-').replace(' ', '-')}.parquet"
        with pq.ParquetWriter(files[name], default.schema_arrow, compression="snappy",
                              write_page_index=index, data_page_size=1 << 20) as out:
            for g in range(len(groups)):
                out.write_table(default.read_row_group(g), row_group_size=groups[g])

    present = row_id(rows // 2)
    absent = row_id(rows + 12_345)
    middle = START + datetime.timedelta(seconds=STEP_S * (rows // 3))
    until = middle + datetime.timedelta(minutes=10)
    stamp = lambda t: t.strftime("%Y-%m-%d %H:%M:%S")
    queries = {
        "id = present": (f"id = {present}", ds.field("id") == present),
        "id = absent": (f"id = {absent}", ds.field("id") == absent),
        "ts in 10 min": (f"ts >= TIMESTAMP '{stamp(middle)}' AND ts < TIMESTAMP '{stamp(until)}'",
                         (ds.field("ts") >= middle) & (ds.field("ts") < until)),
    }
    con = duckdb.connect()
    con.execute("SET threads = 1")
    con.execute("SET TimeZone = 'UTC'")
    profile = work / "skip-profile.json"
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute(f"PRAGMA profiling_output = '{profile}'")
    measured = {}
    for name, path in files.items():
        for query, (where, expression) in queries.items():
            measured[name, query] = (duckdb_query(con, profile, path, where),
                                     datafusion_query(path, where), pyarrow_query(path, expression))
            found = {reader[2] for reader in measured[name, query]}
            if len(found) != 1:
                sys.exit(f"{name}, {query}: the readers found {found} rows")

    base = costs["default"]
    size_rows = [[name, f"{files[name].stat().st_size:,}",
                  f"{costs[name]:.2f}" if name in costs else "",
                  f"{costs[name] / base:.2f}" if name in costs else ""] for name in files]
    mb = lambda n: f"{n / 1e6:.1f}"
    query_rows = []
    for (name, query), (duck, fusion, arrow) in measured.items():
        query_rows.append([name, query, duck[2], f"{duck[0] * 1000:.1f}", mb(duck[1]), duck[3],
                           f"{fusion[0] * 1000:.1f}", mb(fusion[1]), fusion[3],
                           f"{arrow[0] * 1000:.1f}", mb(arrow[1])])
    lines = [SECTION, "",
             f"One run of `bench/skipping.py` (`scripts/bench`) on {datetime.date.today()}, CPU: {cpu_model()}. "
             f"Source: {size / 1e6:.0f} MB of NDJSON, {rows:,} rows (`{SCHEMA}`), ids unique and scrambled, "
             f"timestamps {STEP_S} s apart in a scrambled order; converted by the release function to Snappy "
             "with each option. The `pyarrow` files are the `default` file's rows rewritten by pyarrow in the "
             "same row groups with 1 MiB pages, without and with the page index, to isolate it.", "",
             f"Write cost and size (function CPU seconds for the whole conversion, median of {ROUNDS}; ratio to "
             "`default`):", ""]
    lines += table(["file", "bytes", "write CPU s", "× default"], size_rows)
    lines += ["", f"Queries, `SELECT *` with the filter, median of {RUNS} warm runs on one thread; rows found; MB "
              "read as each reader says (DuckDB: its profiler's `total_bytes_read`; DataFusion: `bytes_scanned`; "
              "pyarrow: bytes through a counting file system); DuckDB's row groups scanned of all; DataFusion's "
              "pages kept of all by the page index:", ""]
    lines += table(["file", "filter", "rows", "DuckDB ms", "DuckDB MB", "DuckDB row groups",
                    "DataFusion ms", "DataFusion MB", "DataFusion pages", "pyarrow ms", "pyarrow MB"], query_rows)
    section = "\n".join(lines) + "\n"
    print(section)
    replace_section(SECTION, section)


if __name__ == "__main__":
    main()
