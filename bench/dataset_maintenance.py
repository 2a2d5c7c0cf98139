#!/usr/bin/env python3
"""A Hive dataset's maintenance measured: a folder partitioned by day (two days) with a Glue
table over it, fed APPENDS small appends (100 rows each) through the release function under the
Runtime API emulator, against moto's server as the Glue Data Catalog and S3; then compacted by
one invocation (`{"maintain": {"folder": …, "rewrite_data_files": …}}`; a first one, after the
first append, marks the table for compaction) and, once the replaced
files are older than the bound, cleaned by a second (`remove_orphan_files`). After the appends,
after the compaction and after the clean-up: the files the table reads (at each partition's
Glue location), the objects under the folder, and a full read as Athena reads the table (each
partition's files at its location, fetched and decoded by pyarrow), median of 3, every row
checked once; the compaction's wall time, CPU seconds and peak RSS (a process of its own).

usage: dataset_maintenance.py BOOTSTRAP_BIN [--appends N] [--results]
       (--results replaces the "Dataset maintenance" section of bench/RESULTS.md)"""
import datetime
import io
import json
import os
import pathlib
import statistics
import sys
import time

import pyarrow.parquet as pq

from emulator import Emulator
from local_catalog import Moto, environment
from run import arg, cpu_model, report, table

SECTION = "## Dataset maintenance"
LAKE = "lake"
ROWS = 100
DAYS = ["2024-05-01", "2024-05-02"]
FOLDER = f"s3://{LAKE}/clicks/"
TABLE = "bench.clicks"
# The maintenance invocations' deadline: files younger than it plus 5 s are carried over.
DEADLINE_S = 90


def append(function, n):
    rows = [{"id": n * ROWS + i, "dt": DAYS[i % 2], "name": f"row {n * ROWS + i}"} for i in range(ROWS)]
    event = {"rows": rows, "partition_by": ["dt"],
             "targets": [{"prefix": FOLDER, "compression": "snappy", "glue_table": TABLE}]}
    kind, body, ms = function.invoke(json.dumps(event).encode())
    assert kind == "response", body
    return ms


def read_files(moto):
    """The keys of the files the table reads: each partition's, at its Glue location."""
    glue, s3 = moto.client("glue"), moto.client("s3")
    pages = glue.get_paginator("get_partitions").paginate(DatabaseName="bench", TableName="clicks")
    keys = []
    for page in pages:
        for partition in page["Partitions"]:
            prefix = partition["StorageDescriptor"]["Location"].split(f"s3://{LAKE}/", 1)[1].rstrip("/") + "/"
            listed = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=LAKE, Prefix=prefix)
                      for o in p.get("Contents", [])]
            keys += [k for k in listed if "/" not in k[len(prefix):] and not k[len(prefix):].startswith(("_", "."))]
    return keys


def state(moto):
    s3 = moto.client("s3")
    objects = [o for p in s3.get_paginator("list_objects_v2").paginate(Bucket=LAKE, Prefix="clicks/")
               for o in p.get("Contents", [])]
    return {"files read": len(read_files(moto)), "objects": len(objects),
            "MB": sum(o["Size"] for o in objects) / 1e6}


def reads(moto, rows):
    """Median seconds of 3 full reads as Athena reads the table: the files at each partition's
    Glue location listed, each fetched (one GET) and decoded by pyarrow; every row once."""
    seconds = []
    s3 = moto.client("s3")
    for _ in range(3):
        started = time.perf_counter()
        ids = []
        for key in read_files(moto):
            body = s3.get_object(Bucket=LAKE, Key=key)["Body"].read()
            ids += pq.read_table(io.BytesIO(body), columns=["id"]).column("id").to_pylist()
        seconds.append(time.perf_counter() - started)
        assert len(ids) == rows and len(set(ids)) == rows, (len(ids), len(set(ids)))
    return statistics.median(seconds)


def maintain(bootstrap, moto, env, steps):
    """One maintenance invocation in a process of its own: its reply, wall ms, CPU s, peak MiB."""
    keeper = Emulator(bootstrap, {**moto.function_env(), **env}, timeout_s=900)
    try:
        cpu_before = keeper.cpu_seconds()
        event = {"maintain": {"folder": FOLDER, "glue_table": TABLE, **steps}}
        kind, reply, ms = keeper.invoke(json.dumps(event).encode(), deadline_s=DEADLINE_S)
        assert kind == "response", reply
        return reply["maintained"], ms, keeper.cpu_seconds() - cpu_before, keeper.peak_rss_kib() / 1024
    finally:
        keeper.stop()


def main():
    bootstrap = pathlib.Path(sys.argv[1])
    appends = arg("--appends", 1000)
    env = {"ALLOWED_TABLES": "bench.*"}
    with environment():
        moto = Moto(buckets=[LAKE], databases=["bench"])
        try:
            function = Emulator(bootstrap, {**moto.function_env(), **env}, timeout_s=300)
            try:
                times = [append(function, 0)]
                # The first run marks the table: writes from then on look where partitions are.
                marked, _, _, _ = maintain(bootstrap, moto, env, {"rewrite_data_files": {}})
                assert marked["rewrite_data_files"]["more"], marked
                times += [append(function, n) for n in range(1, appends)]
            finally:
                function.stop()
            fed = {**state(moto), "reads": reads(moto, appends * ROWS)}
            time.sleep(DEADLINE_S + 6)
            compaction, ms, cpu, peak = maintain(bootstrap, moto, env, {"rewrite_data_files": {}})
            compacted = {**state(moto), "reads": reads(moto, appends * ROWS)}
            time.sleep(DEADLINE_S + 6)
            cleaning, clean_ms, _, _ = maintain(bootstrap, moto, env, {"remove_orphan_files": {"older_than_seconds": 0}})
            cleaned = {**state(moto), "reads": reads(moto, appends * ROWS)}
        finally:
            moto.stop()
    rewrite = compaction["rewrite_data_files"]
    header = ["dataset", "files the table reads", "objects under the folder", "their MB", "full read s"]
    rows = [[label, s["files read"], s["objects"], f"{s['MB']:.1f}", f"{s['reads']:.2f}"]
            for label, s in [(f"{appends:,} appends", fed), ("compacted", compacted), ("replaced files removed", cleaned)]]
    lines = [SECTION, "",
             f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores: `bench/dataset_maintenance.py` (the "
             f"release function under the Runtime API emulator, moto's server as Glue and S3 on the same cores): a "
             f"folder partitioned by day (two days) with a Glue table over it, fed {appends:,} appends of {ROWS} rows "
             f"each (p50 {statistics.median(times):.1f} ms, with the look-up of where each partition is read: a "
             "first `rewrite_data_files` after the first append marked the table), then "
             "`rewrite_data_files` (defaults) and, once the replaced files were older than the bound, "
             "`remove_orphan_files`. Full read: the files at each partition's Glue location listed, as Athena "
             "reads the table, each fetched (one GET) and decoded by pyarrow, median of 3, every row checked "
             "once.", ""]
    lines += table(header, rows)
    lines += ["", f"The compaction: {rewrite['partitions']} partitions, {rewrite['files_read']:,} files "
              f"({rewrite['bytes_read'] / 1e6:.1f} MB) into {rewrite['files_written']}, in {ms / 1e3:.1f} s wall, "
              f"{cpu:.2f} CPU s, peak RSS {peak:.0f} MiB; then {cleaning['remove_orphan_files']['files_deleted']:,} "
              f"replaced files deleted in {clean_ms / 1e3:.1f} s."]
    report(lines)


if __name__ == "__main__":
    main()
