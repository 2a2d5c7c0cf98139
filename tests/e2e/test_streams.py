"""Stream batches (Kinesis Data Streams, Kafka, DynamoDB Streams) through the built `bootstrap`
(under the Runtime API emulator), against moto's server as S3 and the Glue Data Catalog, into
a folder and an Iceberg table (DEFAULT_TARGETS), read back by pyarrow, pyiceberg and DuckDB:

- a Kinesis shard's batches: the same batch twice, an overlapping batch, a batch bisected
  after a failure and retried whole: every record once in the table, the folder's object for
  a batch overwritten by its redelivery; maintenance of the table (compaction, expiry) and
  another engine's commit and expiry in between: a redelivery still adds nothing;
- KPL-aggregated and gzip'd records, NDJSON records, the metadata columns (STREAM_METADATA);
- a Kafka batch of two topic-partitions with a bad record: without ERROR_OUTPUT the
  partition stops before it and the reply names it (Powertools' shape); with ERROR_OUTPUT the
  record is written there with Firehose's error fields and everything else is committed; a
  record whose rows do not convert with the others' is found and set aside the same way;
- DynamoDB INSERT / MODIFY / REMOVE as a change log;
- four shards fed at once by four invocations through a Glue that refuses a stale
  VersionId: every record once.

Run by scripts/test; DUCKDB_ICEBERG_VENV comes from scripts/env.sh."""
import base64
import contextlib
import gzip
import hashlib
import io
import json
import pathlib
import sys
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import Emulator  # noqa: E402
from helpers import BOOTSTRAP, function, invoke  # noqa: E402
from iceberg_readers import duckdb_scan, pyiceberg_scan  # noqa: E402
from local_catalog import Moto, VersionedGlue, environment  # noqa: E402

LAKE = "lake"
ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
TABLES = {"TABLE_WAREHOUSE": f"s3://{LAKE}/warehouse/", "ALLOWED_TABLES": "streams.*"}


@pytest.fixture(scope="module")
def moto():
    with environment():
        server = Moto(buckets=[LAKE], databases=["streams"])
        yield server
        server.stop()


def targets(name):
    return json.dumps([{"prefix": f"s3://{LAKE}/out/{name}/", "compression": "snappy"},
                       {"table": f"streams.{name}"}])


def b64(data):
    return base64.b64encode(data).decode()


def seq(n):
    """A Kinesis sequence number: 56 digits, increasing with n."""
    return f"4959033827149025660855969253836157109592157598913{n:07d}"


def kinesis(shard, records):
    """A Kinesis batch of `(n, data bytes)` records of `shard`."""
    return {"Records": [{"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"user-{n % 3}",
                                     "sequenceNumber": seq(n), "data": b64(data),
                                     "approximateArrivalTimestamp": 1764892800 + n / 1000},
                         "eventSource": "aws:kinesis", "eventID": f"{shard}:{seq(n)}",
                         "eventName": "aws:kinesis:record", "eventSourceARN": ARN, "awsRegion": "us-east-1"}
                        for n, data in records]}


def click(n):
    return json.dumps({"id": n, "page": f"/p/{n % 7}", "ms": n * 3}).encode()


def clicks(shard, first, last):
    return kinesis(shard, [(n, click(n)) for n in range(first, last + 1)])


def kpl(datas):
    """A KPL aggregated record of `datas`, as the Kinesis Producer Library writes it."""
    def varint(n):
        out = bytearray()
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    def field(number, data):
        return varint(number << 3 | 2) + varint(len(data)) + data

    message = field(1, b"pk")
    for data in datas:
        message += field(3, varint(1 << 3) + varint(0) + field(3, data))
    return b"\xf3\x89\x9a\xc2" + message + hashlib.md5(message).digest()


def table_ids(moto, name):
    """The `id` column of the table, as pyiceberg and as DuckDB read it, each sorted."""
    arrow, _ = pyiceberg_scan(moto, f"streams.{name}", columns=("id",))
    table = moto.catalog().load_table(f"streams.{name}")
    rows, _ = duckdb_scan(moto, table.metadata_location, columns="id")
    return sorted(arrow.column("id").to_pylist()), sorted(r[0] for r in rows)


def folder(moto, name):
    """Each object of the folder, read by pyarrow, by key."""
    s3 = moto.client("s3")
    out = {}
    for key in moto.keys(LAKE, f"out/{name}/"):
        body = s3.get_object(Bucket=LAKE, Key=key)["Body"].read()
        out[key] = pq.read_table(io.BytesIO(body))
    return out


def ok(emulator, event, request_id=None):
    kind, reply = invoke(emulator, event, request_id)
    assert kind == "response", reply
    return reply["batchItemFailures"]


def test_a_shards_records_land_once_whatever_lambda_redelivers_or_resplits(moto):
    name = "clicks"
    emulator = function(moto, DEFAULT_TARGETS=targets(name), **TABLES)
    try:
        assert ok(emulator, clicks("shardId-000000000000", 1, 10)) == []
        assert table_ids(moto, name) == (list(range(1, 11)),) * 2
        first = folder(moto, name)
        assert [t.num_rows for t in first.values()] == [10]

        # The same batch again: nothing added, the folder's object rewritten in place.
        assert ok(emulator, clicks("shardId-000000000000", 1, 10)) == []
        assert table_ids(moto, name) == (list(range(1, 11)),) * 2
        assert folder(moto, name).keys() == first.keys()

        # An overlapping batch adds only what is new to the table.
        assert ok(emulator, clicks("shardId-000000000000", 6, 15)) == []
        assert table_ids(moto, name) == (list(range(1, 16)),) * 2

        # Bisected after a failure: the first half lands, then the whole is retried.
        assert ok(emulator, clicks("shardId-000000000000", 16, 20)) == []
        assert ok(emulator, clicks("shardId-000000000000", 16, 25)) == []
        expected = list(range(1, 26))
        assert table_ids(moto, name) == (expected, expected)
        snapshot = moto.catalog().load_table(f"streams.{name}").current_snapshot()
        marks = json.loads(snapshot.summary["rows-to-parquet.streams"])
        assert marks[ARN]["shardId-000000000000"]["p"] == seq(25)

        # The marks survive this function's maintenance (compaction, then expiry of every
        # snapshot but the last)...
        kind, reply = invoke(emulator, {"maintain": {"table": f"streams.{name}",
                                                     "rewrite_data_files": {"min_input_files": 2},
                                                     "expire_snapshots": {"older_than_seconds": 0, "retain_last": 1}}})
        assert kind == "response", reply
        assert len(moto.catalog().load_table(f"streams.{name}").metadata.snapshots) == 1
        assert ok(emulator, clicks("shardId-000000000000", 1, 25)) == []
        assert table_ids(moto, name) == (expected, expected)

        # ... and another engine's append and expiry, which know nothing of them: the markers
        # beside the table still answer.
        table = moto.catalog().load_table(f"streams.{name}")
        arrow = table.scan(limit=0).to_arrow().schema.empty_table()
        row = {f.name: None for f in arrow.schema}
        row["id"] = 1000
        table.append(pa.Table.from_pylist([row], schema=arrow.schema))
        table = moto.catalog().load_table(f"streams.{name}")
        current = table.current_snapshot().snapshot_id
        old = [s.snapshot_id for s in table.metadata.snapshots if s.snapshot_id != current]
        table.maintenance.expire_snapshots().by_ids(old).commit()
        table = moto.catalog().load_table(f"streams.{name}")
        assert "rows-to-parquet.streams" not in table.current_snapshot().summary.additional_properties
        assert ok(emulator, clicks("shardId-000000000000", 20, 26)) == []
        assert table_ids(moto, name) == (expected + [26, 1000],) * 2
    finally:
        emulator.stop()


def test_kpl_gzip_and_ndjson_records_with_their_metadata_columns(moto):
    name = "packed"
    emulator = function(moto, DEFAULT_TARGETS=targets(name), STREAM_METADATA="all", **TABLES)
    try:
        ndjson = b"\n".join(click(n) for n in (3, 4)) + b"\n"
        batch = kinesis("shardId-000000000001", [
            (1, click(1)),
            (2, gzip.compress(ndjson)),
            (5, kpl([click(5), gzip.compress(click(6)), b"\n".join(click(n) for n in (7, 8))])),
        ])
        assert ok(emulator, batch) == []
        assert table_ids(moto, name) == ([1, 3, 4, 5, 6, 7, 8],) * 2
        [(_, written)] = folder(moto, name).items()
        rows = sorted(written.to_pylist(), key=lambda r: r["id"])
        assert [r["id"] for r in rows] == [1, 3, 4, 5, 6, 7, 8]
        assert {r["_shard_id"] for r in rows} == {"shardId-000000000001"}
        assert [r["_sequence_number"] for r in rows] == [seq(1), seq(2), seq(2), seq(5), seq(5), seq(5), seq(5)]
        assert rows[0]["_partition_key"] == "user-1"
        assert rows[0]["_arrival_time"] == "2025-12-05T00:00:00.001Z"
    finally:
        emulator.stop()


def kafka(partitions):
    """A Kafka batch: `{"topic-n": [(offset, value bytes or None)]}`."""
    return {"eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/1",
            "bootstrapServers": "b-1.c.kafka.us-east-1.amazonaws.com:9098",
            "records": {tp: [{"topic": tp.rsplit("-", 1)[0], "partition": int(tp.rsplit("-", 1)[1]), "offset": offset,
                              "timestamp": 1764892800000 + offset, "timestampType": "CREATE_TIME",
                              "key": b64(f"k{offset}".encode()), "value": None if value is None else b64(value),
                              "headers": []}
                             for offset, value in records]
                        for tp, records in partitions.items()}}


def orders(tp, offsets, bad=(), conflicting=()):
    out = []
    for o in offsets:
        order = 100 * int(tp[-1]) + o
        value = json.dumps({"id": order, "total": o * 2}).encode()
        if o in bad:
            value = b'{"id": ' + str(order).encode() + b', "total": '
        if o in conflicting:
            value = json.dumps({"id": order, "total": {"amount": o}}).encode()
        out.append((o, value))
    return out


def test_a_bad_kafka_record_stops_its_partition_or_goes_to_the_error_output(moto):
    name = "orders"
    stops = function(moto, DEFAULT_TARGETS=targets(name), **TABLES)
    errors_at = f"s3://{LAKE}/errors/{name}/"
    sets_aside = function(moto, DEFAULT_TARGETS=targets(name), ERROR_OUTPUT=errors_at, **TABLES)
    s3 = moto.client("s3")
    try:
        batch = kafka({"orders-0": orders("orders-0", range(5), bad={2}),
                       "orders-1": orders("orders-1", range(5), conflicting={3})})
        # Without an error output: each partition stops at its first bad record.
        failures = ok(stops, batch)
        assert failures == [{"itemIdentifier": {"partition": "orders-0", "offset": 2}},
                            {"itemIdentifier": {"partition": "orders-1", "offset": 3}}]
        assert table_ids(moto, name) == ([0, 1, 100, 101, 102],) * 2
        [(_, written)] = folder(moto, name).items()
        assert sorted(written.column("id").to_pylist()) == [0, 1, 100, 101, 102]
        assert moto.keys(LAKE, "errors/") == []

        # Lambda's retry from the failed records, the bad ones still bad: nothing more.
        retry = kafka({"orders-0": orders("orders-0", range(2, 5), bad={2}),
                       "orders-1": orders("orders-1", range(3, 5), conflicting={3})})
        assert len(ok(stops, retry)) == 2
        assert table_ids(moto, name) == ([0, 1, 100, 101, 102],) * 2

        # With the error output, the same batch: everything else committed, once.
        assert ok(sets_aside, batch) == []
        assert table_ids(moto, name) == ([0, 1, 3, 4, 100, 101, 102, 104],) * 2
        keys = moto.keys(LAKE, "errors/")
        assert len(keys) == 2
        records = [json.loads(s3.get_object(Bucket=LAKE, Key=k)["Body"].read()) for k in keys]
        by_offset = {(r["topicPartition"], r["offset"]): r for r in records}
        assert set(by_offset) == {("orders-0", 2), ("orders-1", 3)}
        bad = by_offset[("orders-0", 2)]
        assert base64.b64decode(bad["rawData"]) == orders("orders-0", [2], bad={2})[0][1]
        assert bad["errorCode"] == "InvalidEvent" and "offset 2 of orders-0" in bad["errorMessage"]
        assert bad["key"] == "k2" and bad["arrivalTimestamp"] == 1764892800002
        conflict = by_offset[("orders-1", 3)]
        assert "do not convert" in conflict["errorMessage"] or "has type" in conflict["errorMessage"], conflict

        # A redelivery overwrites its error records and adds nothing.
        assert ok(sets_aside, batch) == []
        assert moto.keys(LAKE, "errors/") == keys
        assert table_ids(moto, name) == ([0, 1, 3, 4, 100, 101, 102, 104],) * 2
        # A tombstone (no value) has no rows and still moves the partition on.
        assert ok(sets_aside, kafka({"orders-0": [(5, None)]})) == []
    finally:
        stops.stop()
        sets_aside.stop()


def test_dynamodb_changes_become_a_change_log(moto):
    name = "customers"
    emulator = function(moto, DEFAULT_TARGETS=targets(name), **TABLES)
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/Customers/stream/2026-12-01T00:00:00.000"

    def change(event, sequence, keys, new=None):
        record = {"Keys": keys, "SequenceNumber": sequence, "ApproximateCreationDateTime": 1764892800,
                  "StreamViewType": "NEW_AND_OLD_IMAGES"}
        if new:
            record["NewImage"] = new
        return {"eventID": sequence, "eventName": event, "eventSource": "aws:dynamodb",
                "eventSourceARN": arn, "dynamodb": record}

    key = {"id": {"N": "7"}}
    batch = {"Records": [
        change("INSERT", "100", key, {"id": {"N": "7"}, "name": {"S": "Ana"}, "balance": {"N": "12.50"}}),
        change("MODIFY", "200", key, {"id": {"N": "7"}, "name": {"S": "Ana"}, "balance": {"N": "7.25"}}),
        change("REMOVE", "300", key),
    ]}
    try:
        assert ok(emulator, batch) == []
        assert ok(emulator, batch) == []
        arrow, _ = pyiceberg_scan(moto, f"streams.{name}")
        rows = sorted(arrow.to_pylist(), key=lambda r: r["_sequence_number"])
        assert [(r["_change_type"], r["id"]) for r in rows] == [("INSERT", 7), ("UPDATE_AFTER", 7), ("DELETE", 7)]
        assert rows[2]["name"] is None and rows[0]["_commit_timestamp"] == "2025-12-05T00:00:00.000Z"
        assert [float(r["balance"]) for r in rows[:2]] == [12.5, 7.25]
        [(_, written)] = folder(moto, name).items()
        assert sorted(written.column("_change_type").to_pylist()) == ["DELETE", "INSERT", "UPDATE_AFTER"]
    finally:
        emulator.stop()


@contextlib.contextmanager
def racing(moto, name, count):
    """`count` functions writing `name` through a Glue that refuses a stale VersionId, and
    the proxy; stopped at the end."""
    glue = VersionedGlue(moto)
    env = {**moto.function_env(), **TABLES, "DEFAULT_TARGETS": targets(name), "AWS_ENDPOINT_URL_GLUE": glue.endpoint}
    emulators = [Emulator(BOOTSTRAP, env, timeout_s=120) for _ in range(count)]
    try:
        yield glue, emulators
    finally:
        for e in emulators:
            e.stop()
        glue.stop()


def together(work, args):
    """`work(*a)` for each `a` of `args`, on threads of their own, all finished."""
    threads = [threading.Thread(target=work, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_shards_fed_at_once_land_every_record_once(moto):
    name = "sharded"
    failures = []
    with racing(moto, name, 4) as (glue, emulators):
        def feed(shard, emulator):
            for n in range(4):
                first = shard * 1000 + n * 10
                kind, reply = invoke(emulator, clicks(f"shardId-00000000000{shard}", first, first + 9))
                if kind != "response" or reply["batchItemFailures"]:
                    # Lambda retries a failed batch: so does this feeder, once.
                    kind, reply = invoke(emulator, clicks(f"shardId-00000000000{shard}", first, first + 9))
                    if kind != "response":
                        failures.append(reply)

        together(feed, enumerate(emulators))
        assert failures == []
        expected = sorted(s * 1000 + i for s in range(4) for i in range(40))
        assert table_ids(moto, name) == (expected, expected)
        print(f"4 shards at once: {glue.conflicts} commits refused as stale, {glue.updates} landed")


def test_a_batch_redelivered_beside_itself_lands_once(moto):
    """Lambda runs one batch of a shard at a time, in order (ParallelizationFactor 1), but a
    duplicate delivery may run beside the first, whole or as a bisected half: the twin's
    commit finds the work committed, and a commit that finds the shard's mark moved since it
    filtered is refused, its retry adding only what is new."""
    name = "duplicated"
    answers = []
    with racing(moto, name, 2) as (_, emulators):
        for round_ in range(3):
            base = round_ * 100
            last = base + (90 if round_ else 60)
            batches = [clicks("shardId-000000000009", base + 1, base + 90),
                       clicks("shardId-000000000009", base + 1, last)]

            def deliver(emulator, batch):
                kind, reply = invoke(emulator, batch)
                answers.append(reply.get("errorType") if kind == "error" else "ok")
                if kind == "error":
                    assert reply["errorType"] == "CommitConflict", reply
                    kind, reply = invoke(emulator, batch)
                    assert kind == "response", reply

            together(deliver, zip(emulators, batches))
        expected = sorted(r * 100 + i for r in range(3) for i in range(1, 91))
        assert table_ids(moto, name) == (expected, expected)
        print(f"deliveries beside each other: {answers}")


def test_a_full_batch_at_lambdas_limits_converts(moto):
    """10,000 records in one event just under Lambda's 6 MB payload limit (local servers enforce
    no limit: the event is checked against it here)."""
    name = "full"
    emulator = function(moto, DEFAULT_TARGETS=targets(name), **TABLES)
    try:
        records = [(n, json.dumps({"id": n, "user": f"user-{n % 997:04d}", "page": f"/item/{n % 1201}",
                                   "ms": n % 2000}).encode()) for n in range(10_000)]
        event = kinesis("shardId-000000000003", records)
        body = json.dumps(event, separators=(",", ":")).encode()
        assert 5_000_000 < len(body) <= 6 * 1024 * 1024, len(body)
        request_id = emulator.submit(body, deadline_s=120)
        kind, reply, _ = emulator.answer(request_id, 120)
        assert (kind, reply) == ("response", {"batchItemFailures": []})
        arrow, _ = pyiceberg_scan(moto, f"streams.{name}", columns=("id",))
        assert sorted(arrow.column("id").to_pylist()) == list(range(10_000))
        assert sum(t.num_rows for t in folder(moto, name).values()) == 10_000
    finally:
        emulator.stop()
