#!/usr/bin/env python3
"""Table maintenance measured: a partitioned Iceberg table (two days) fed APPENDS small appends
(100 rows each) through the release function under the Runtime API emulator, against moto's
server as the Glue Data Catalog and S3, then maintained by one invocation
(rewrite_data_files, rewrite_manifests, expire_snapshots keeping the last one,
remove_orphan_files). The table's state (live data files, manifests, snapshots, objects and
bytes under its location and its metadata/ folder, the metadata file's size) and full reads by
pyiceberg and DuckDB 1.4.4's iceberg extension (median of 3) are measured after 10 appends, after
APPENDS, and after the maintenance; so are the maintenance's wall time, CPU seconds and peak
RSS (a process of its own). Every row is checked once by both readers.

usage: maintenance.py BOOTSTRAP_BIN [--appends N] [--results]
       (--results replaces the "Table maintenance" section of bench/RESULTS.md)"""
import datetime
import json
import os
import pathlib
import statistics
import sys
import time

from emulator import Emulator
from iceberg_readers import duckdb_scan, pyiceberg_scan
from local_catalog import Moto, environment
from run import arg, cpu_model, percentile, report, table

SECTION = "## Table maintenance"
LAKE = "lake"
ROWS = 100
DAYS = ["2024-05-01", "2024-05-02"]
# Lambda's arm64 price per GB-second (us-east-1, public price list, read 2026-12-05), and the
# memory that buys one full vCPU.
GB_SECOND_USD = 0.0000133334
ONE_VCPU_GB = 1.769


def append(function, name, n):
    rows = [{"id": n * ROWS + i, "dt": DAYS[i % 2], "name": f"row {n * ROWS + i}"} for i in range(ROWS)]
    event = {"rows": rows, "partition_by": ["dt"], "targets": [{"table": name}]}
    kind, body, ms = function.invoke(json.dumps(event).encode())
    assert kind == "response", body
    return ms


def state(moto, name):
    """What the table is made of now."""
    t = moto.catalog().load_table(name)
    location = t.location().split("/", 3)[3].rstrip("/") + "/"
    s3 = moto.client("s3")
    objects = [o for page in s3.get_paginator("list_objects_v2").paginate(Bucket=LAKE, Prefix=location)
               for o in page.get("Contents", [])]
    metadata = [o for o in objects if "/metadata/" in o["Key"]]
    current = t.current_snapshot()
    meta_key = t.metadata_location.split("/", 3)[3]
    return {
        "snapshots": len(list(t.snapshots())),
        "data files": len(list(t.scan().plan_files())),
        "manifests": len(current.manifests(t.io)) if current else 0,
        "objects": len(objects),
        "MB": sum(o["Size"] for o in objects) / 1e6,
        "metadata objects": len(metadata),
        "metadata MB": sum(o["Size"] for o in metadata) / 1e6,
        "metadata.json KB": s3.head_object(Bucket=LAKE, Key=meta_key)["ContentLength"] / 1e3,
    }


def reads(moto, name, rows):
    """Median seconds of 3 full reads by pyiceberg and by DuckDB; each must hold every row."""
    py, duck = [], []
    for _ in range(3):
        arrow, seconds = pyiceberg_scan(moto, name, columns=("id",))
        ids = arrow.column("id").to_pylist()
        assert len(ids) == rows and len(set(ids)) == rows, (len(ids), len(set(ids)))
        py.append(seconds)
        found, seconds = duckdb_scan(moto, moto.catalog().load_table(name).metadata_location, columns="id")
        assert len(found) == rows and len({r[0] for r in found}) == rows, len(found)
        duck.append(seconds)
    return statistics.median(py), statistics.median(duck)


def main():
    bootstrap = pathlib.Path(sys.argv[1])
    appends = arg("--appends", 1000)
    tables = {"TABLE_WAREHOUSE": f"s3://{LAKE}/warehouse/", "ALLOWED_TABLES": "bench.*"}
    with environment():
        moto = Moto(buckets=[LAKE], databases=["bench"])
        try:
            function = Emulator(bootstrap, {**moto.function_env(), **tables}, timeout_s=300)
            try:
                for n in range(10):
                    append(function, "bench.small", n)
                small = {**state(moto, "bench.small"), "reads": reads(moto, "bench.small", 10 * ROWS)}
                times = [append(function, "bench.fed", n) for n in range(appends)]
            finally:
                function.stop()
            fed = {**state(moto, "bench.fed"), "reads": reads(moto, "bench.fed", appends * ROWS)}
            # The maintenance, in a process of its own (its peak RSS), with Lambda's longest
            # timeout.
            keeper = Emulator(bootstrap, {**moto.function_env(), **tables}, timeout_s=900)
            try:
                cpu_before = keeper.cpu_seconds()
                event = {"maintain": {"table": "bench.fed",
                                      "rewrite_data_files": {"min_input_files": 2},
                                      "rewrite_manifests": {},
                                      "expire_snapshots": {"older_than_seconds": 0, "retain_last": 1},
                                      "remove_orphan_files": {"older_than_seconds": 0}}}
                kind, reply, ms = keeper.invoke(json.dumps(event).encode(), deadline_s=900)
                assert kind == "response", reply
                cpu = keeper.cpu_seconds() - cpu_before
                peak = keeper.peak_rss_kib() / 1024
            finally:
                keeper.stop()
            maintained = {**state(moto, "bench.fed"), "reads": reads(moto, "bench.fed", appends * ROWS)}
        finally:
            moto.stop()
    steps = reply["maintained"]
    rewrite = steps["rewrite_data_files"]
    header = ["table", "snapshots", "data files", "manifests", "objects under its location", "their MB",
              "metadata/ objects", "metadata/ MB", "metadata.json KB", "pyiceberg read s", "DuckDB read s"]
    rows = []
    for label, s in [("10 appends", small), (f"{appends:,} appends", fed), (f"{appends:,} appends, maintained", maintained)]:
        rows.append([label, s["snapshots"], s["data files"], s["manifests"], s["objects"], f"{s['MB']:.1f}",
                     s["metadata objects"], f"{s['metadata MB']:.1f}", f"{s['metadata.json KB']:.0f}",
                     f"{s['reads'][0]:.2f}", f"{s['reads'][1]:.2f}"])
    gb = rewrite["bytes_read"] / 1e9
    usd = cpu * ONE_VCPU_GB * GB_SECOND_USD
    lines = [SECTION, "",
             f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores: `bench/maintenance.py` (the release "
             f"function under the Runtime API emulator, moto's server as Glue and S3 on the same cores): one Iceberg "
             f"table partitioned by day (two days) fed {appends:,} appends of {ROWS} rows each (p50 "
             f"{statistics.median(times[:50]):.1f} ms over the first 50, {statistics.median(times[-50:]):.1f} ms over "
             f"the last 50, p99 {percentile(times, 99):.1f} ms), beside a table of 10 such appends; then one "
             "maintenance invocation (rewrite_data_files with min_input_files 2, rewrite_manifests, expire_snapshots "
             "keeping 1, remove_orphan_files). Reads: the whole table by pyiceberg and by DuckDB 1.4.4's "
             "iceberg_scan, median of 3, every row checked once.", ""]
    lines += table(header, rows)
    lines += ["",
              f"The maintenance: {ms / 1e3:.1f} s, {cpu:.1f} CPU-seconds, peak RSS {peak:.1f} MiB; rewrote "
              f"{rewrite['files_read']:,} data files ({rewrite['bytes_read'] / 1e6:.1f} MB) into "
              f"{rewrite['files_written']} in {rewrite['partitions']} partitions; merged "
              f"{steps['rewrite_manifests']['files_read']:,} manifests into {steps['rewrite_manifests']['files_written']}; "
              f"expired {steps['expire_snapshots']['snapshots_expired']:,} snapshots and deleted "
              f"{steps['expire_snapshots']['files_deleted']:,} files; remove_orphan_files deleted "
              f"{steps['remove_orphan_files']['files_deleted']} (its bound, the timeout plus 5 s, keeps what is younger). "
              f"At Lambda's arm64 price (${GB_SECOND_USD} per GB-second, 1,769 MB for one vCPU; read 2026-12-05) its "
              f"CPU time costs ${usd:.5f}" + (f", ${usd / gb:.4f} per GB rewritten." if gb > 0 else "."), ""]
    report(lines)


if __name__ == "__main__":
    main()
