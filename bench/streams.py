#!/usr/bin/env python3
"""Full Kinesis batches measured: BATCHES batches of 10,000 small records each (JSON clicks,
the event just under Lambda's 6 MB payload limit, base64 and all), one shard in order, through
the release function under the Runtime API emulator:

- into the two default folders (uncompressed and Snappy) on the embedded S3 server;
- into the same folders and an Iceberg table (moto's server as the Glue Data Catalog and S3),
  every record then read back once by pyiceberg.

Per case: time per batch (median, max), the function's CPU-seconds per batch, its peak RSS
(one process per case), the records' bytes per CPU-second, and the Lambda cost per GB of
records from that CPU time; beside Amazon Data Firehose's documented buffering and list
prices (quoted with where they come from).

usage: streams.py BOOTSTRAP_BIN LOCAL_S3_BIN WORK_DIR [--batches N] [--results]
       (--results replaces the "Stream batches" section of bench/RESULTS.md)"""
import base64
import datetime
import json
import os
import pathlib
import statistics
import sys

from emulator import Emulator, LocalS3
from local_catalog import Moto, environment
from run import arg, cpu_model, report, table

SECTION = "## Stream batches"
PAYLOAD_LIMIT = 6 * 1024 * 1024
RECORDS = 10_000
ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
# Lambda's arm64 price per GB-second and per request (us-east-1 list price), and the memory
# that buys one full vCPU.
GB_SECOND_USD = 0.0000133334
REQUEST_USD = 0.20 / 1e6
ONE_VCPU_GB = 1.769


def batch(number, records_per_batch=RECORDS, note=""):
    """The `number`th batch of the shard: click records (each with `note`, to size it), and the
    bytes of their data."""
    records, data_bytes = [], 0
    for i in range(records_per_batch):
        n = number * records_per_batch + i
        click = {"id": n, "user": f"user-{n % 9973:05d}", "page": f"/shop/item/{n % 1201}",
                 "referrer": "https://example.com/search?q=shoes", "ms": n % 2000, "ok": n % 17 != 0}
        if note:
            click["note"] = note
        data = json.dumps(click).encode()
        data_bytes += len(data)
        seq = f"4959033827149025660855969253836157109592157598913{n:07d}"
        records.append({"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": click["user"], "sequenceNumber": seq,
                                    "data": base64.b64encode(data).decode(), "approximateArrivalTimestamp": 1764892800.0 + n / 1e3},
                        "eventSource": "aws:kinesis", "eventID": f"shardId-000000000000:{seq}",
                        "eventSourceARN": ARN})
    body = json.dumps({"Records": records}, separators=(",", ":")).encode()
    assert len(body) <= PAYLOAD_LIMIT, f"{len(body)} bytes: over Lambda's 6 MB payload limit"
    return body, data_bytes


def run(function, batches):
    """(ms per batch, CPU-seconds in all, records' bytes in all)."""
    times, data_total = [], 0
    cpu_before = function.cpu_seconds()
    for number, (body, data_bytes) in enumerate(batches):
        kind, reply, ms = function.invoke(body, deadline_s=300)
        assert kind == "response" and reply == {"batchItemFailures": []}, reply
        times.append(ms)
        data_total += data_bytes
    return times, function.cpu_seconds() - cpu_before, data_total


def main():
    bootstrap, local_s3, work = (pathlib.Path(a) for a in sys.argv[1:4])
    count = arg("--batches", 5)
    # 10,000 small records fill a 6 MB event; records of about 500 bytes fill it at about
    # 6,000 (base64 makes 500 bytes 668).
    shapes = [(RECORDS, ""), (6_000, "x" * 340)]
    folders = json.dumps([{"prefix": "s3://lake/out/clicks/", "compression": "uncompressed"},
                          {"prefix": "s3://lake/out/clicks-snappy/", "compression": "snappy"}])
    results, again = [], []
    work.mkdir(parents=True, exist_ok=True)
    for number, (per_batch, note) in enumerate(shapes):
        batches = [batch(n, per_batch, note) for n in range(count)]
        full_mb = len(batches[0][0]) / per_batch * RECORDS / 1e6
        shape = f"{per_batch:,} records of {batches[0][1] / per_batch:.0f} B ({len(batches[0][0]) / 1e6:.2f} MB events)"
        s3 = LocalS3(local_s3, work / f"s3-{number}", buckets=("lake",))
        try:
            function = Emulator(bootstrap, {"AWS_ENDPOINT_URL_S3": s3.endpoint, "DEFAULT_TARGETS": folders}, timeout_s=300)
            try:
                times, cpu, data = run(function, batches)
                results.append((shape, "2 folders (embedded S3)", times, cpu, data, function.peak_rss_kib() / 1024))
            finally:
                function.stop()
            assert len(s3.objects("lake")) == 2 * count, s3.objects("lake")
        finally:
            s3.stop()
        with environment():
            moto = Moto(buckets=["lake"], databases=["bench"])
            try:
                both = json.dumps(json.loads(folders) + [{"table": "bench.clicks"}])
                env = {**moto.function_env(), "DEFAULT_TARGETS": both, "TABLE_WAREHOUSE": "s3://lake/warehouse/"}
                function = Emulator(bootstrap, env, timeout_s=300)
                try:
                    times, cpu, data = run(function, batches)
                    results.append((shape, "2 folders + an Iceberg table (moto)", times, cpu, data,
                                    function.peak_rss_kib() / 1024))
                    # Every batch again: the marks skip every record.
                    again += [function.invoke(body, deadline_s=300)[2] for body, _ in batches]
                finally:
                    function.stop()
                clicks = moto.catalog().load_table("bench.clicks")
                ids = clicks.scan(selected_fields=("id",)).to_arrow().column("id").to_pylist()
                assert sorted(ids) == list(range(count * per_batch)), "every record once"
            finally:
                moto.stop()
    header = ["batches of", "targets", "batches", "ms per batch (median)", "max ms", "CPU-s per batch", "MB of records per CPU-s",
              "peak RSS MiB", "Lambda $ per GB of records"]
    rows = []
    for shape, label, times, cpu, data, peak in results:
        per_gb = (cpu / (data / 1e9)) * ONE_VCPU_GB * GB_SECOND_USD + (1e9 / data) * count * REQUEST_USD
        rows.append([shape, label, count, f"{statistics.median(times):.0f}", f"{max(times):.0f}", f"{cpu / count:.2f}",
                     f"{data / 1e6 / cpu:.1f}", f"{peak:.1f}", f"{per_gb:.4f}"])
    lines = [SECTION, "",
             f"{datetime.date.today()}, {cpu_model()}, {os.cpu_count()} cores: `bench/streams.py` (the release function "
             f"under the Runtime API emulator, the servers on the same cores): {count} full Kinesis batches of each "
             "shape, one shard in order: 10,000 small JSON records, and JSON records of about 500 bytes, as many "
             "as fill an event under Lambda's 6 MB limit with their base64 and envelope (10,000 of those would "
             f"make {full_mb:.1f} MB: Lambda stops a batch at 6 MB).", ""]
    lines += table(header, rows)
    lines += ["",
              f"Each batch makes one object per folder and one snapshot of the table; delivered again, the "
              f"batches took {statistics.median(again):.0f} ms each (median) and added nothing (the marks). "
              "The peak RSS is the whole process, under a 128 MB function's memory. Cost: the CPU time at Lambda's arm64 "
              f"price (${GB_SECOND_USD} per GB-second, 1,769 MB buys one vCPU, so at any memory size the same CPU "
              "costs about the same) plus $0.20 per million requests; S3 and Glue requests are extra (a few per batch).",
              "",
              "Amazon Data Firehose, for comparison (its documentation and us-east-1 price list as known to this "
              "project, not re-read on this machine, which has no internet access; check them before relying on "
              "them): with record format conversion its buffer is at least 64 MiB (up to 900 s), each record is "
              "billed rounded up to the next 5 KB, ingestion is $0.029 per GB and format conversion $0.018 per GB. "
              "A record under 5 KB is billed as 5 KB: about "
              + " and ".join(f"${0.029 * 5120 / (data / (count * int(shape.split()[0].replace(',', '')))) + 0.018:.2f} "
                             f"per GB of the {shape.split(' (')[0]}"
                             for shape, label, _, _, data, _ in results if label.startswith("2 folders ("))
              + ".", ""]
    report(lines)


if __name__ == "__main__":
    main()
