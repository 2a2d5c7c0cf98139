#!/usr/bin/env python3
"""A whole-prefix job run locally as template.yaml's state machine runs it on AWS, without an
account (tests/e2e/test_state_machine.py runs the definition itself under moto; this runs the
same steps at scale): the embedded S3 server holds a generated prefix of NDJSON objects; the
function's plan step lists it and groups its objects into batches of about BATCH_BYTES (at
most BATCH objects); each planned batch goes, with the `BatchInput`, to CONCURRENCY copies of
the built function, each under its own Runtime API emulator (as Lambda runs one invocation per
execution environment at a time), and writes one file per day per target; the job's `commit`
steps run before and after, the finish reading every batch's manifest from the plan. Then every output object is read back with
pyarrow and DuckDB (`hive_partitioning`): every input row must be in exactly one object of each
target, in the folder of its own `dt`, and the `_SUCCESS` marker must list exactly the objects
in its folder.

With `--table`, the target is one Iceberg table instead (created by the first batch from
TABLE_WAREHOUSE, partitioned by `dt`), with moto's server as the Glue Data Catalog: the
batches write data files and commit nothing, the finish commits them all in one snapshot, and
pyiceberg must read every row once from exactly one snapshot.

usage: fanout.py BOOTSTRAP_BIN LOCAL_S3_BIN WORK_DIR [--objects N] [--rows N] [--batch N]
                 [--batch-bytes N] [--concurrency N] [--table] [--results]   (--results: replace the "Fan-out
                 over a prefix" section of bench/RESULTS.md, or with --table "Fan-out into an
                 Iceberg table")

Prints objects/s and MB/s (input bytes over wall time, plan to commit), the peak RSS of each
function process (VmHWM), and the files each target got per day: one per batch, against one
per object before batches shared their files. Every request and reply is held to Step
Functions' 256 KiB."""
import datetime
import json
import os
import pathlib
import queue
import sys
import threading
import time
import uuid

from emulator import ACCESS_KEY, SECRET_KEY, Emulator, LocalS3
from run import arg, cpu_model, report, table

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTION = "## Fan-out over a prefix"
TABLE_SECTION = "## Fan-out into an Iceberg table"
IN, OUT, PREFIX = "in-bucket", "out-bucket", "in/fanout/"
TARGETS = [{"prefix": f"s3://{OUT}/out/fanout/", "compression": "uncompressed"},
           {"prefix": f"s3://{OUT}/out/fanout-snappy/", "compression": "snappy"}]
TABLE = "analytics.fanout"
# A table is created from a source's rows only with a declared schema.
SCHEMA = "id BIGINT, dt STRING, city STRING, score DOUBLE, active BOOLEAN, note STRING"
DAYS = [f"2024-01-{d:02d}" for d in range(1, 9)]
# Step Functions fails a state whose output (a batch's reply is its child execution's) passes this.
STATE_OUTPUT_LIMIT = 256 * 1024
CITIES = ["New York", "Los Angeles", "Chicago", "Houston"]


def day_of(row_id):
    return DAYS[(row_id * 7919) % len(DAYS)]


def generate(root, objects, rows):
    """`objects` NDJSON objects of `rows` rows each, ids unique across all; their total bytes."""
    folder = root / IN / PREFIX
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for o in range(objects):
        lines = []
        for r in range(rows):
            i = o * rows + r
            lines.append(json.dumps({"id": i, "dt": day_of(i), "city": CITIES[i % 4],
                                     "score": i * 0.25, "active": i % 3 == 0, "note": f"row {i} of object {o}"}))
        text = "\n".join(lines) + "\n"
        (folder / f"part-{o:05d}.ndjson").write_text(text)
        total += len(text)
    return total


def files_per_object(objects, rows):
    """The objects one target got before batches shared their files (one file per object per
    day it holds), for the report's comparison."""
    return sum(len({day_of(o * rows + r) for r in range(rows)}) for o in range(objects))


def verify(root, objects, rows):
    """Every row once per target, in its own day's folder; the markers list every object."""
    import duckdb
    import pyarrow.parquet as pq

    expected = objects * rows
    counts = {}
    for target in TARGETS:
        base = root / OUT / target["prefix"].split("/", 3)[3]
        files = sorted(p for p in base.rglob("*.parquet"))
        seen = bytearray(expected)
        for path in files:
            folder = path.parent.name
            assert folder.startswith("dt="), path
            ids = pq.read_table(path, columns=["id"]).column("id").to_pylist()
            assert "dt" not in pq.read_schema(path).names, f"{path}: the partition column is in the file"
            for i in ids:
                assert day_of(i) == folder[3:], f"row {i} in {folder}"
                assert not seen[i], f"row {i} twice"
                seen[i] = 1
        assert all(seen), f"{expected - sum(seen)} rows missing under {target['prefix']}"
        marker = json.loads((base / "_SUCCESS").read_text())
        listed = sorted(marker["filenames"])
        assert listed == [str(p.relative_to(base)) for p in files], "the marker lists other objects"
        assert marker["rows"] == expected, marker["rows"]
        glob = f"{base}/**/*.parquet"
        got = duckdb.sql(f"SELECT count(*), count(DISTINCT id), count(DISTINCT dt) FROM read_parquet('{glob}', hive_partitioning=true)").fetchall()[0]
        assert got == (expected, expected, len(DAYS)), got
        counts[target["compression"]] = len(files)
    return counts


def verify_table(moto, s3, objects, rows):
    """Every row once in the table, from one snapshot recording the map run; its data files."""
    from pyiceberg.catalog import load_catalog
    props = {"glue.endpoint": moto.endpoint, "glue.region": "us-east-1", "glue.access-key-id": "testing",
             "glue.secret-access-key": "testing", "s3.endpoint": s3.endpoint, "s3.region": "us-east-1",
             "s3.access-key-id": ACCESS_KEY, "s3.secret-access-key": SECRET_KEY}
    table = load_catalog("local", type="glue", **props).load_table(TABLE)
    snapshots = table.snapshots()
    assert len(snapshots) == 1, f"{len(snapshots)} snapshots"
    identity = snapshots[0].summary.additional_properties["rows-to-parquet.identity"]
    assert identity.startswith("job arn:"), identity
    expected = objects * rows
    ids = table.scan(selected_fields=("id",)).to_arrow().column("id").to_pylist()
    assert len(ids) == expected and len(set(ids)) == expected, f"{len(ids)} rows, {len(set(ids))} distinct"
    files = table.inspect.files().to_pylist()
    for f in files:
        assert f["file_path"].split("/")[-2] == f"dt={f['partition']['dt']}", f["file_path"]
    return len(files)


def main():
    bootstrap, local_s3, work = map(pathlib.Path, sys.argv[1:4])
    objects, rows = arg("--objects", 1000), arg("--rows", 2000)
    batch, concurrency = arg("--batch", 1000), arg("--concurrency", 4)
    batch_bytes = arg("--batch-bytes", 256 << 20)
    into_table = "--table" in sys.argv
    s3 = LocalS3(local_s3, work / "s3", buckets=(IN, OUT))
    functions, moto = [], None
    targets = [{"table": TABLE}] if into_table else TARGETS
    try:
        input_bytes = generate(s3.root, objects, rows)
        env = {"AWS_ENDPOINT_URL_S3": s3.endpoint, "DEFAULT_TARGETS": json.dumps(targets)}
        if into_table:
            from local_catalog import Moto
            moto = Moto(databases=["analytics"])
            env.update(AWS_ENDPOINT_URL_GLUE=moto.endpoint, TABLE_WAREHOUSE=f"s3://{OUT}/warehouse/",
                       ALLOWED_TABLES="analytics.*")
        functions = [Emulator(bootstrap, env, timeout_s=300) for _ in range(concurrency)]
        for f in functions:
            f.init_ms()
        started = time.perf_counter()
        kind, reply, _ = functions[0].invoke(json.dumps({"commit": {"phase": "start"}, "targets": targets}).encode())
        assert kind == "response", reply
        # As the template's state machine: the function plans the prefix into batches by bytes,
        # each element of the plan is one batch (its Items with the BatchInput), and each batch
        # lists what it wrote under the run's folder.
        plan = {"bucket": IN, "prefix": PREFIX, "output": f"s3://{OUT}/out/_jobs/run-1/",
                "batch_bytes": batch_bytes, "max_items": batch}
        kind, planned, _ = functions[0].invoke(json.dumps({"plan": plan}).encode())
        assert kind == "response", planned
        planned = planned["plan"]
        assert planned["objects"] == objects and planned["bytes"] == input_bytes, planned
        elements = json.loads((s3.root / OUT / planned["key"]).read_text())
        batch_input = {"bucket": IN, "targets": targets, "partition_by": ["dt"], "manifests": planned["manifests"]}
        if into_table:
            batch_input["schema"] = SCHEMA
        batches = queue.Queue()
        for element in elements:
            payload = json.dumps({"Items": element["Items"], "BatchInput": batch_input}).encode()
            assert len(payload) <= STATE_OUTPUT_LIMIT, f"a child execution's input of {len(payload)} bytes"
            batches.put(payload)
        replies, failures = [], []

        def worker(function):
            while True:
                try:
                    payload = batches.get_nowait()
                except queue.Empty:
                    return
                kind, body, _ = function.invoke(payload)
                (replies if kind == "response" else failures).append(body)

        threads = [threading.Thread(target=worker, args=(f,)) for f in functions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        largest = max(len(json.dumps(reply).encode()) for reply in replies)
        assert largest <= STATE_OUTPUT_LIMIT, f"a batch replied {largest} bytes: Step Functions fails the state"
        map_run = f"arn:aws:states:us-east-1:123456789012:mapRun:convert-prefix/Convert:{uuid.uuid4()}"
        commit = {"commit": {"phase": "finish", "plan": planned, "map_run": map_run}, "targets": targets}
        kind, committed, _ = functions[0].invoke(json.dumps(commit).encode())
        assert kind == "response", committed
        wall = time.perf_counter() - started
        peaks = [f.peak_rss_kib() / 1024 for f in functions]
        cpu = sum(f.cpu_seconds() for f in functions)
        if into_table:
            data_files = verify_table(moto, s3, objects, rows)
            assert committed["tables"][0]["data_files"] == data_files, committed
    finally:
        for f in functions:
            f.stop()
        if moto:
            moto.stop()
        s3.stop()
    mb = input_bytes / 1e6
    row = [objects, f"{mb:.1f}", len(replies), concurrency, f"{wall:.1f}", f"{objects / wall:.0f}",
           f"{mb / wall:.1f}", f"{cpu:.1f}", f"{mb / cpu:.1f}",
           f"{max(peaks):.0f} ({min(peaks):.0f}-{max(peaks):.0f})"]
    header = ["objects", "input MB", "batches", "processes", "wall s", "objects/s", "MB/s",
              "function CPU s", "MB per CPU-s", "peak RSS MiB per process (min-max)"]
    setting = (f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores: `scripts/fanout"
               f"{' --table' if into_table else ''}` ({objects} NDJSON objects of {rows} rows under one prefix, "
               f"`partition_by: [\"dt\"]` over {len(DAYS)} days, planned into {len(elements)} batches of at most "
               f"{batch_bytes / 2**20:g} MiB and {batch} objects, {concurrency} function "
               "processes at once, each under its own Runtime API emulator, with the embedded S3 server on the "
               "same cores). ")
    if into_table:
        header += ["snapshots", "data files", "largest batch reply, bytes (limit 262,144)"]
        row += [1, data_files, largest]
        lines = [TABLE_SECTION, "", setting +
                 f"Into one Iceberg table (`{TABLE}`, created by the first batch, identity-partitioned by "
                 "`dt`) with moto's server as the Glue Data Catalog: the batches write data files and commit "
                 "nothing; the finish step commits every batch's files in one snapshot. Wall time from the "
                 "start commit to that snapshot, listing included; CPU is the function processes' user + system "
                 "time. pyiceberg read every row once, from the table's one snapshot, each data file in its "
                 "day's partition.", ""]
    else:
        files = verify(s3.root, objects, rows)
        before = files_per_object(objects, rows)
        header += ["objects written", "files per day per target (one per object before)",
                   "largest batch reply, bytes (limit 262,144)"]
        row += [f"{files['uncompressed']} + {files['snappy']}",
                f"{files['snappy'] / len(DAYS):g} ({before / len(DAYS):g})", largest]
        lines = [SECTION, "", setting +
                 "Wall time from the start commit to the `_SUCCESS` markers, the plan included; CPU is the "
                 "function processes' user + system time (what Lambda bills, at 1 vCPU per 1,769 MB). Every row "
                 "was read back once per target, in its own day's folder (pyarrow, and DuckDB with "
                 "hive_partitioning), and each marker lists exactly the objects in its folder.", ""]
    lines += table(header, [row])
    report(lines)


if __name__ == "__main__":
    main()
