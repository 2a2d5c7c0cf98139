#!/usr/bin/env python3
"""Iceberg table targets against folder targets, end to end, in one run: the release
function under the Runtime API emulator writes seed-6mb (the shared generator's 6 MB event)
to a folder (uncompressed and Snappy, the seed job's two targets) and to a table (zstd, one
data file and one snapshot per invocation), in alternating rounds, against moto's server as
S3 and the Glue Data Catalog. Reports the p50 and p99 of each, the difference a table's
commit makes, the Glue and S3 requests per table append (counted through a proxy in a
separate, untimed pass), the function's peak RSS, and init with table targets configured.

usage: tables.py BOOTSTRAP_BIN EVENTS_DIR [--results]   (EVENTS_DIR holds seed-6mb.json;
       --results replaces the "Iceberg tables" section of bench/RESULTS.md)"""
import collections
import datetime
import json
import os
import pathlib
import statistics
import sys

from emulator import Emulator, Proxy
from local_catalog import Moto, environment
from run import cpu_model, percentile, report, table

SECTION = "## Iceberg tables"
ROUNDS, PER_ROUND = 4, 10
INIT_SPAWNS = 20
LAKE = "lake"


def counter(counts):
    """A proxy's intercept counting requests: Glue by operation, S3 by method (and multipart
    steps)."""
    def count(request):
        target = request.headers.get("X-Amz-Target")
        if target:
            counts["Glue " + target.split(".")[-1]] += 1
        else:
            query = request.path.partition("?")[2]
            step = " (multipart)" if "uploadId" in query or "uploads" in query else ""
            counts[f"S3 {request.method}{step}"] += 1
    return count


def appends(function, payload, n):
    """Milliseconds of `n` invocations of `payload`, each of which must succeed."""
    times = []
    for _ in range(n):
        kind, body, ms = function.invoke(payload)
        assert kind == "response", body
        times.append(ms)
    return times


def main():
    bootstrap, events = map(pathlib.Path, sys.argv[1:3])
    with environment():
        measure(bootstrap, events)


def measure(bootstrap, events):
    seed = json.loads((events / "seed-6mb.json").read_text())
    folder_event = json.dumps({**seed, "targets": [
        {"prefix": f"s3://{LAKE}/out/parquet/", "compression": "uncompressed"},
        {"prefix": f"s3://{LAKE}/out/parquet-snappy/", "compression": "snappy"}]}).encode()
    table_event = json.dumps({**seed, "targets": [{"table": "bench.seed"}]}).encode()
    moto = Moto(buckets=[LAKE], databases=["bench"])
    counts = collections.Counter()
    proxy = Proxy(moto.port, counter(counts))
    tables = {"TABLE_WAREHOUSE": f"s3://{LAKE}/warehouse/", "ALLOWED_TABLES": "bench.*"}
    try:
        inits = []
        for _ in range(INIT_SPAWNS):
            function = Emulator(bootstrap, {**moto.function_env(), **tables})
            inits.append(function.init_ms())
            function.stop()
        function = Emulator(bootstrap, {**moto.function_env(), **tables}, timeout_s=120)
        try:
            # The first append creates the table: not measured.
            kind, body, _ = function.invoke(table_event)
            assert kind == "response" and body["tables"][0]["created"], body
            times = {"folder": [], "table": []}
            for _ in range(ROUNDS):
                for name, payload in (("folder", folder_event), ("table", table_event)):
                    times[name] += appends(function, payload, PER_ROUND)
            peak = function.peak_rss_kib() / 1024
        finally:
            function.stop()
        # The requests an append makes, through the counting proxy (not timed).
        counted = {**moto.function_env(), **tables, "AWS_ENDPOINT_URL_S3": proxy.endpoint,
                   "AWS_ENDPOINT_URL_GLUE": proxy.endpoint}
        function = Emulator(bootstrap, counted, timeout_s=120)
        try:
            appends(function, table_event, PER_ROUND)
        finally:
            function.stop()
        snapshots = len(moto.catalog().load_table("bench.seed").snapshots())
    finally:
        proxy.stop()
        moto.stop()
    assert snapshots == 1 + ROUNDS * PER_ROUND + PER_ROUND, snapshots
    folder_p50, table_p50 = statistics.median(times["folder"]), statistics.median(times["table"])
    rows = [[name, len(ms), f"{statistics.median(ms):.1f}", f"{percentile(ms, 99):.1f}"]
            for name, ms in times.items()]
    requests = ", ".join(f"{what} {n / PER_ROUND:g}" for what, n in sorted(counts.items()))
    lines = [SECTION, "",
             f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores: `bench/tables.py` (the release "
             f"function under the Runtime API emulator, seed-6mb.json, {ROUNDS} alternating rounds of "
             f"{PER_ROUND} invocations each, against moto's server as S3 and Glue on the same cores). "
             "Folder: the seed job's two targets (uncompressed and Snappy). Table: one Iceberg table, zstd, "
             "one data file and one snapshot per invocation; the table grows by a snapshot each time. "
             "Milliseconds from handing the event over to the answer.", ""]
    lines += table(["targets", "invocations", "p50 ms", "p99 ms"], rows)
    lines += ["",
              f"A table append costs {table_p50 - folder_p50:+.1f} ms at p50 against the two folder objects "
              f"({table_p50 / folder_p50:.2f}× the folder's time). Requests per append (counted by a proxy "
              f"over {PER_ROUND} more appends): {requests}. Peak RSS of the function over the timed run: "
              f"{peak:.1f} MiB. Init with table targets configured (the Glue client is built on first use): "
              f"{statistics.median(inits):.1f} ms median, {max(inits):.1f} ms at most, over {INIT_SPAWNS} "
              f"spawns. {snapshots} snapshots committed, one per append.", ""]
    report(lines)


if __name__ == "__main__":
    main()
