"""Iceberg table targets through the built `bootstrap` (under the Runtime API emulator),
against moto's server as the Glue Data Catalog and S3, read back with pyiceberg as an engine
reads them:

- inline rows create the table from TABLE_WAREHOUSE, and land beside a folder target;
- a retried invocation (the same request id) adds nothing; another one adds a snapshot;
- the data files carry the table's field ids, their manifest entries the metrics engines
  prune on, and the Glue table is what Iceberg's Glue catalog writes;
- a source object (several chunks) streams into a table once per version of the object;
- an SQS batch commits its good messages in one snapshot, once, and reports the bad one;
- a table created before a failure (a bad line deep in a source) stays readable and empty;
- every refusal (a missing table, a table outside ALLOWED_TABLES, a column the table lacks,
  a value its type cannot take, a partitioned table, a map batch) writes nothing anywhere;
- a table's `write.parquet.bloom-filter-enabled.column.id` property and its sort order (`id`
  descending) shape the data file: DuckDB finds a bloom filter on `id` alone, which holds
  every id written and rules out absent ones, and the rows are in the table's order;
- 8 writers appending to one table at once, through a proxy that makes moto's Glue refuse a
  stale VersionId as Glue does, all land once, and no file is left unreferenced.

Run by scripts/test after the debug binaries are built; CARGO_TARGET_DIR comes from
scripts/env.sh, moto and pyiceberg from the virtualenv scripts/setup makes."""
import json
import os
import pathlib
import sys

import pyarrow.parquet as pq
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from local_catalog import Moto, environment  # noqa: E402
from helpers import function, invoke, map_run  # noqa: E402

LAKE = "lake"
WAREHOUSE = f"s3://{LAKE}/warehouse/"
ROWS = [{"name": "John Doe", "age": 30, "city": "New York"},
        {"name": "Jane Roe", "age": 41, "city": "Chicago"},
        {"name": "Max Mustermann", "age": None, "city": "Berlin"}]


@pytest.fixture(scope="module")
def moto():
    with environment():
        server = Moto(buckets=[LAKE], databases=["analytics", "raw"])
        yield server
        server.stop()


def test_rows_create_a_table_and_each_invocation_commits_once(moto):
    emulator = function(moto, TABLE_WAREHOUSE=WAREHOUSE, ALLOWED_TABLES="analytics.*")
    try:
        event = {"rows": ROWS, "targets": [{"table": "analytics.clicks"},
                                           {"prefix": f"s3://{LAKE}/out/clicks/", "compression": "snappy"}]}
        kind, reply = invoke(emulator, event, request_id="req-1")
        assert kind == "response", reply
        table_reply = reply["tables"][0]
        assert (table_reply["table"], table_reply["created"], table_reply["rows"]) == ("analytics.clicks", True, 3)
        assert len(table_reply["data_files"]) == 1 and len(reply["objects"]) == 1, reply
        data_file = table_reply["data_files"][0]
        assert data_file.startswith(f"{WAREHOUSE}analytics.db/clicks/data/"), data_file

        table = moto.catalog().load_table("analytics.clicks")
        assert sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["name"]) == \
            sorted(ROWS, key=lambda r: r["name"])
        snapshots = table.snapshots()
        assert len(snapshots) == 1
        assert snapshots[0].snapshot_id == table_reply["snapshot_id"]
        assert snapshots[0].summary.additional_properties["rows-to-parquet.identity"] == "request req-1"

        # The file: the table's field ids; its manifest entry: the metrics engines prune on.
        key = data_file.split("/", 3)[3]
        body = moto.client("s3").get_object(Bucket=LAKE, Key=key)["Body"].read()
        local = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "table-data-file.parquet"
        local.write_bytes(body)
        ids = {f.name: int(f.metadata[b"PARQUET:field_id"]) for f in pq.read_schema(local)}
        assert ids == {f.name: f.field_id for f in table.schema().fields}, ids
        assert pq.ParquetFile(local).metadata.row_group(0).column(0).compression == "ZSTD"
        files = table.inspect.files().to_pylist()
        assert [f["record_count"] for f in files] == [3]
        age_id = table.schema().find_field("age").field_id
        metrics = {name: dict(files[0][name]) for name in ("value_counts", "null_value_counts", "lower_bounds", "upper_bounds")}
        assert (metrics["value_counts"][age_id], metrics["null_value_counts"][age_id]) == (3, 1), metrics
        assert int.from_bytes(metrics["lower_bounds"][age_id], "little") == 30
        assert int.from_bytes(metrics["upper_bounds"][age_id], "little") == 41

        # As Iceberg's own Glue catalog keeps it.
        glue = moto.client("glue").get_table(DatabaseName="analytics", Name="clicks")["Table"]
        assert glue["Parameters"]["table_type"] == "ICEBERG"
        assert glue["Parameters"]["metadata_location"] == table.metadata_location
        assert [(c["Name"], c["Type"]) for c in glue["StorageDescriptor"]["Columns"]] == \
            [("name", "string"), ("age", "bigint"), ("city", "string")]

        # A retry of the same invocation: nothing more, and nothing left behind.
        before = moto.keys(LAKE, "warehouse/")
        kind, again = invoke(emulator, event, request_id="req-1")
        assert kind == "response", again
        assert again["tables"][0]["already_committed"] is True and again["tables"][0]["data_files"] == []
        assert again["tables"][0]["snapshot_id"] == table_reply["snapshot_id"]
        assert moto.keys(LAKE, "warehouse/") == before
        assert len(moto.catalog().load_table("analytics.clicks").snapshots()) == 1

        # Another invocation: a second snapshot, the rows twice.
        kind, other = invoke(emulator, {"rows": ROWS[:1], "targets": [{"table": "analytics.clicks"}]},
                             request_id="req-2")
        assert kind == "response" and other["tables"][0]["created"] is False, other
        table = moto.catalog().load_table("analytics.clicks")
        assert len(table.snapshots()) == 2 and len(table.scan().to_arrow()) == 4
    finally:
        emulator.stop()


def test_every_refusal_writes_nothing(moto):
    without_warehouse = function(moto, ALLOWED_TABLES="analytics.*,raw.*")
    creating = function(moto, TABLE_WAREHOUSE=WAREHOUSE, ALLOWED_TABLES="analytics.*")
    try:
        # A table to refuse against, made by another engine (pyiceberg).
        import pyarrow as pa
        schema = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])
        made = moto.catalog().create_table("raw.people", schema=schema, location=f"{WAREHOUSE}raw.db/people")
        by_name = moto.catalog().create_table("raw.by_name", schema=schema, location=f"{WAREHOUSE}raw.db/by_name")
        with by_name.update_spec() as spec:
            spec.add_identity("name")
        before = moto.keys(LAKE)
        cases = [
            (without_warehouse, {"table": "raw.missing"}, [{"id": 1}], "TableNotFound", "TABLE_WAREHOUSE"),
            (creating, {"table": "raw.people"}, [{"id": 1}], "TableNotAllowed", "ALLOWED_TABLES"),
            (without_warehouse, {"table": "raw.people"}, [{"id": 1, "email": "x"}], "TableSchemaMismatch", "`email`"),
            (without_warehouse, {"table": "raw.people"}, [{"id": 1}, {"id": "two"}], "InvalidEvent", "row 1"),
            (without_warehouse, {"table": "raw.by_name"}, [{"id": 1}], "InvalidEvent", "disagrees"),
            (without_warehouse, {"table": "raw.people"}, [{"id": 1}], "InvalidEvent", "map batch"),
        ]
        for emulator, target, rows, error_type, word in cases:
            event = {"rows": rows, "targets": [target, {"prefix": f"s3://{LAKE}/out/refused/", "compression": "zstd"}]}
            if word == "disagrees":
                event["partition_by"] = ["id"]
            if word == "map batch":
                event = {"Items": [{"Key": "in/a.ndjson"}], "BatchInput": {"bucket": LAKE, "targets": event["targets"]}}
            kind, answer = invoke(emulator, event)
            assert kind == "error", answer
            assert answer["errorType"] == error_type and word in answer["errorMessage"], answer
            assert moto.keys(LAKE) == before, (error_type, sorted(set(moto.keys(LAKE)) - set(before)))
        assert moto.catalog().load_table("raw.people").snapshots() == []
        assert made.metadata_location == moto.catalog().load_table("raw.people").metadata_location

        # The table decides: an int column takes an in-range JSON integer, a missing one is null.
        kind, reply = invoke(without_warehouse, {"rows": [{"id": 7}, {"name": "n"}], "targets": [{"table": "raw.people"}]})
        assert kind == "response", reply
        got = moto.catalog().load_table("raw.people").scan().to_arrow().to_pylist()
        assert sorted(got, key=lambda r: r["id"] or 0) == [{"id": None, "name": "n"}, {"id": 7, "name": None}]
    finally:
        without_warehouse.stop()
        creating.stop()


def table_files(moto, table):
    """Every key under the table's location, and those its metadata refers to: the current
    and logged metadata files, each snapshot's manifest list, manifests and data files."""
    # The table's folder: the markers of committed work lie beside it (<location>.rows-to-parquet/).
    location = table.location().split("/", 3)[3].rstrip("/") + "/"
    referenced = {table.metadata_location, *(entry.metadata_file for entry in table.metadata.metadata_log)}
    for snapshot in table.snapshots():
        referenced.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            referenced.add(manifest.manifest_path)
            referenced.update(entry.data_file.file_path for entry in manifest.fetch_manifest_entry(table.io))
    stored = {f"s3://{LAKE}/{key}" for key in moto.keys(LAKE, location)}
    return stored, referenced


def test_eight_concurrent_writers_all_land_once_and_leave_no_orphans(moto):
    import threading

    from local_catalog import VersionedGlue

    import pyarrow as pa
    schema = pa.schema([pa.field("writer", pa.int64()), pa.field("n", pa.int64())])
    moto.catalog().create_table("analytics.busy", schema=schema, location=f"{WAREHOUSE}analytics.db/busy")
    glue = VersionedGlue(moto)
    writers = [function(moto, AWS_ENDPOINT_URL_GLUE=glue.endpoint) for _ in range(8)]
    try:
        replies = [None] * len(writers)

        def write(i):
            rows = [{"writer": i, "n": n} for n in range(50)]
            replies[i] = invoke(writers[i], {"rows": rows, "targets": [{"table": "analytics.busy"}]},
                                request_id=f"writer-{i}")

        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(kind == "response" for kind, _ in replies), replies
        assert glue.conflicts > 0, "the writers never conflicted: the test proves nothing"
        table = moto.catalog().load_table("analytics.busy")
        assert len(table.snapshots()) == 8 and glue.updates == 8
        got = sorted((r["writer"], r["n"]) for r in table.scan().to_arrow().to_pylist())
        assert got == [(i, n) for i in range(8) for n in range(50)]
        identities = sorted(s.summary.additional_properties["rows-to-parquet.identity"] for s in table.snapshots())
        assert identities == [f"request writer-{i}" for i in range(8)]
        stored, referenced = table_files(moto, table)
        assert stored - referenced == set(), "orphan files in the table's location"
        # Each piece of work left one marker beside the table (exactly once past expiry).
        assert len(moto.keys(LAKE, "warehouse/analytics.db/busy.rows-to-parquet/committed/")) == 8
        print(f"8 concurrent writers: {glue.conflicts} commits refused as stale, all 8 landed")

        # 4 deliveries of one piece of work at once (the same request id): it lands once.
        def deliver(i):
            replies[i] = invoke(writers[i], {"rows": [{"writer": 99, "n": 0}], "targets": [{"table": "analytics.busy"}]},
                                request_id="duplicate")

        threads = [threading.Thread(target=deliver, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answers = [answer["tables"][0] for kind, answer in replies[:4] if kind == "response"]
        assert len(answers) == 4, replies[:4]
        assert sorted(a["already_committed"] for a in answers) == [False, True, True, True], answers
        assert len({a["snapshot_id"] for a in answers}) == 1, answers
        table = moto.catalog().load_table("analytics.busy")
        assert len(table.snapshots()) == 9 and len(table.scan().to_arrow()) == 8 * 50 + 1
        stored, referenced = table_files(moto, table)
        assert stored - referenced == set(), "orphan files in the table's location"
    finally:
        for w in writers:
            w.stop()
        glue.stop()


def test_a_source_object_commits_once_per_version_of_the_object(moto):
    emulator = function(moto, TABLE_WAREHOUSE=WAREHOUSE, ALLOWED_TABLES="analytics.*",
                        ALLOWED_SOURCES=f"s3://{LAKE}/in/")
    s3 = moto.client("s3")
    try:
        # About 5 MB: several of the reader's 2 MiB chunks, each streamed into the data file.
        count = 100_000
        lines = "".join(json.dumps({"id": i, "page": f"/p/{i % 7}", "ms": i * 1.5}) + "\n" for i in range(count))
        assert len(lines) > 4 << 20
        s3.put_object(Bucket=LAKE, Key="in/clicks.ndjson", Body=lines.encode())
        event = {"source": {"uri": f"s3://{LAKE}/in/clicks.ndjson"},
                 "schema": "id BIGINT, page STRING, ms DOUBLE",
                 "targets": [{"table": "analytics.pages"},
                             {"prefix": f"s3://{LAKE}/out/pages/", "compression": "snappy"}]}
        kind, reply = invoke(emulator, event)
        assert kind == "response", reply
        first = reply["tables"][0]
        assert (first["created"], first["rows"], reply["rows"], len(reply["objects"])) == (True, count, count, 1), reply
        table = moto.catalog().load_table("analytics.pages")
        assert sorted(table.scan().to_arrow().column("id").to_pylist()) == list(range(count))
        identity = table.snapshots()[0].summary.additional_properties["rows-to-parquet.identity"]
        assert identity.startswith("source "), identity

        # The same object delivered again (another request): nothing more.
        before = moto.keys(LAKE, "warehouse/")
        kind, again = invoke(emulator, event)
        assert kind == "response" and again["tables"][0]["already_committed"] is True, again
        assert moto.keys(LAKE, "warehouse/") == before
        # A new version of the object is new work.
        s3.put_object(Bucket=LAKE, Key="in/clicks.ndjson", Body=lines[: lines.index("\n") + 1].encode())
        kind, newer = invoke(emulator, event)
        assert kind == "response" and newer["tables"][0]["rows"] == 1, newer
        assert len(moto.catalog().load_table("analytics.pages").snapshots()) == 2

        # ALLOWED_SOURCES holds with table targets only, too.
        refused = {"source": {"uri": f"s3://{LAKE}/elsewhere/x.ndjson"}, "targets": [{"table": "analytics.pages"}]}
        kind, answer = invoke(emulator, refused)
        assert (kind, answer["errorType"]) == ("error", "SourceNotAllowed"), answer
        # A missing table cannot be created from a source without a schema.
        kind, answer = invoke(emulator, {"source": event["source"], "targets": [{"table": "analytics.unknown"}]})
        assert (kind, answer["errorType"]) == ("error", "TableNotFound") and "`schema`" in answer["errorMessage"], answer
    finally:
        emulator.stop()


def notification(*keys):
    """S3's ObjectCreated notification for `keys` in the lake bucket."""
    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "awsRegion": "us-east-1",
                         "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": LAKE, "arn": f"arn:aws:s3:::{LAKE}"},
                                "object": {"key": key, "size": 1}}} for key in keys]}


def test_notifications_feed_the_default_tables_once_per_object(moto):
    import pyarrow as pa
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("kind", pa.string())])
    moto.catalog().create_table("analytics.notified", schema=schema, location=f"{WAREHOUSE}analytics.db/notified")
    defaults = json.dumps([{"table": "analytics.notified"}, {"prefix": f"s3://{LAKE}/out/notified/", "compression": "zstd"}])
    emulator = function(moto, DEFAULT_TARGETS=defaults, ALLOWED_TABLES="analytics.*")
    s3 = moto.client("s3")
    try:
        for n, key in enumerate(["in/n/a.ndjson", "in/n/b.ndjson"]):
            s3.put_object(Bucket=LAKE, Key=key, Body=f'{{"id": {n}, "kind": "k{n}"}}\n'.encode())
        kind, reply = invoke(emulator, notification("in/n/a.ndjson", "in/n/b.ndjson"))
        assert kind == "response" and len(reply["results"]) == 2, reply
        assert [r["tables"][0]["rows"] for r in reply["results"]] == [1, 1]
        # S3 delivers a notification at least once: the second delivery adds nothing.
        kind, again = invoke(emulator, notification("in/n/a.ndjson", "in/n/b.ndjson"))
        assert kind == "response" and all(r["tables"][0]["already_committed"] for r in again["results"]), again
        table = moto.catalog().load_table("analytics.notified")
        assert len(table.snapshots()) == 2
        assert sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"]) == \
            [{"id": 0, "kind": "k0"}, {"id": 1, "kind": "k1"}]
        # The function's own data files are never converted back into the table.
        own = table.inspect.files().to_pylist()[0]["file_path"].split("/", 3)[3]
        kind, answer = invoke(emulator, notification(own))
        assert (kind, answer["errorType"]) == ("error", "RecursiveTrigger"), answer
    finally:
        emulator.stop()


def test_schema_evolution_adds_the_new_columns_in_the_datas_own_commit(moto):
    import pyarrow as pa
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("name", pa.string())])
    moto.catalog().create_table("analytics.growing", schema=schema, location=f"{WAREHOUSE}analytics.db/growing")
    strict = function(moto, ALLOWED_TABLES="analytics.*")
    evolving = function(moto, ALLOWED_TABLES="analytics.*", SCHEMA_EVOLUTION="add_columns")
    try:
        target = [{"table": "analytics.growing"}]
        kind, reply = invoke(strict, {"rows": [{"id": 1, "name": "a"}], "targets": target})
        assert kind == "response", reply
        wider = [{"id": 2, "name": "b", "score": 2.5, "seen": "2024-01-02"}]
        kind, answer = invoke(strict, {"rows": wider, "targets": target})
        assert (kind, answer["errorType"]) == ("error", "TableSchemaMismatch"), answer
        # The event may allow it, or the function's SCHEMA_EVOLUTION.
        kind, reply = invoke(strict, {"rows": wider, "targets": target, "schema_evolution": "add_columns"})
        assert kind == "response", reply
        assert reply["tables"][0]["schema"] == "id BIGINT, name STRING, score DOUBLE, seen STRING", reply
        kind, reply = invoke(evolving, {"rows": [{"id": 3, "flag": True}], "targets": target})
        assert kind == "response", reply
        kind, answer = invoke(evolving, {"rows": [{"id": 4, "nested": {"x": 1}}], "targets": target})
        assert (kind, answer["errorType"]) == ("error", "TableSchemaMismatch") and "nested" in answer["errorMessage"], answer
        kind, answer = invoke(strict, {"rows": [{"id": 5}], "targets": target, "schema_evolution": "sometimes"})
        assert (kind, answer["errorType"]) == ("error", "InvalidEvent"), answer

        table = moto.catalog().load_table("analytics.growing")
        assert [f.name for f in table.schema().fields] == ["id", "name", "score", "seen", "flag"]
        assert not any(f.required for f in table.schema().fields[2:])
        # One snapshot per append, each schema change in its data's snapshot.
        assert len(table.snapshots()) == 3 and len(table.metadata.schemas) == 3
        got = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])
        assert got == [{"id": 1, "name": "a", "score": None, "seen": None, "flag": None},
                       {"id": 2, "name": "b", "score": 2.5, "seen": "2024-01-02", "flag": None},
                       {"id": 3, "name": None, "score": None, "seen": None, "flag": True}]

        # Iceberg's type promotions, when a declared schema widens a column (and evolution is
        # allowed): int to long, float to double, a decimal's precision up.
        schema = pa.schema([pa.field("n", pa.int32()), pa.field("x", pa.float32()),
                            pa.field("d", pa.decimal128(5, 2)), pa.field("s", pa.string())])
        made = moto.catalog().create_table("analytics.widening", schema=schema, location=f"{WAREHOUSE}analytics.db/widening")
        ids = [f.field_id for f in made.schema().fields]
        target = [{"table": "analytics.widening"}]
        big = [{"n": 3_000_000_000, "x": 1e300, "d": "123456.78", "s": "a"}]
        declared = "n BIGINT, x DOUBLE, d DECIMAL(10,2), s STRING"
        kind, answer = invoke(strict, {"rows": big, "schema": declared, "targets": target})
        assert (kind, answer["errorType"]) == ("error", "InvalidEvent") and "`n`" in answer["errorMessage"], answer
        kind, reply = invoke(evolving, {"rows": big, "schema": declared, "targets": target})
        assert kind == "response", reply
        assert reply["tables"][0]["schema"] == "n BIGINT, x DOUBLE, d DECIMAL(10,2), s STRING", reply
        table = moto.catalog().load_table("analytics.widening")
        assert [str(f.field_type) for f in table.schema().fields] == ["long", "double", "decimal(10, 2)", "string"]
        assert [f.field_id for f in table.schema().fields] == ids
        row = table.scan().to_arrow().to_pylist()[0]
        assert (row["n"], row["x"], str(row["d"])) == (3_000_000_000, 1e300, "123456.78"), row
        glue = moto.client("glue").get_table(DatabaseName="analytics", Name="widening")["Table"]
        assert [c["Type"] for c in glue["StorageDescriptor"]["Columns"]] == ["bigint", "double", "decimal(10,2)", "string"]
        # Narrowing or another type is no change: the table keeps its type, the values must fit.
        kind, answer = invoke(evolving, {"rows": [{"n": 1, "x": 1.0, "d": "1.00", "s": "b"}], "schema": "n INT, x FLOAT, d DECIMAL(10,2), s BIGINT", "targets": target})
        assert kind == "response", answer
        assert [str(f.field_type) for f in moto.catalog().load_table("analytics.widening").schema().fields][3] == "string"
    finally:
        strict.stop()
        evolving.stop()


def test_the_tables_partition_spec_decides_where_rows_land(moto):
    import pyarrow as pa
    from pyiceberg.transforms import DayTransform
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("ts", pa.timestamp("us"))])
    by_day = moto.catalog().create_table("analytics.by_day", schema=schema, location=f"{WAREHOUSE}analytics.db/by_day")
    with by_day.update_spec() as spec:
        spec.add_field("ts", DayTransform(), "ts_day")
    emulator = function(moto, TABLE_WAREHOUSE=WAREHOUSE, ALLOWED_TABLES="analytics.*")
    try:
        # An existing table's spec (a day transform): the rows go to its partitions.
        rows = [{"id": i, "ts": f"2024-01-0{1 + i % 3}T10:00:00"} for i in range(9)]
        kind, reply = invoke(emulator, {"rows": rows, "targets": [{"table": "analytics.by_day"}]})
        assert kind == "response", reply
        assert len(reply["tables"][0]["data_files"]) == 3, reply
        assert all("/data/ts_day=2024-01-0" in f for f in reply["tables"][0]["data_files"]), reply
        table = moto.catalog().load_table("analytics.by_day")
        files = table.inspect.files().to_pylist()
        assert sorted(f["record_count"] for f in files) == [3, 3, 3]
        day = table.scan(row_filter="ts >= '2024-01-02T00:00:00' and ts < '2024-01-03T00:00:00'")
        assert sorted(r["id"] for r in day.to_arrow().to_pylist()) == [1, 4, 7]

        # A new table from partition_by: identity partitions, beside partitioned folders.
        event = {"rows": [{"dt": "a", "n": 1}, {"dt": "b", "n": 2}, {"dt": "a", "n": 3}],
                 "partition_by": ["dt"],
                 "targets": [{"table": "analytics.by_dt"}, {"prefix": f"s3://{LAKE}/out/by_dt/", "compression": "snappy"}]}
        kind, reply = invoke(emulator, event)
        assert kind == "response", reply
        assert sorted(o["partition"] for o in reply["objects"]) == ["dt=a", "dt=b"]
        table = moto.catalog().load_table("analytics.by_dt")
        assert [(f.name, str(f.transform)) for f in table.spec().fields] == [("dt", "identity")]
        assert sorted(f["record_count"] for f in table.inspect.files().to_pylist()) == [1, 2]
        assert sorted((r["dt"], r["n"]) for r in table.scan().to_arrow().to_pylist()) == [("a", 1), ("a", 3), ("b", 2)]
        # A later event that names other partition columns disagrees with the table's spec.
        kind, answer = invoke(emulator, {**event, "partition_by": ["n"]})
        assert (kind, answer["errorType"]) == ("error", "InvalidEvent") and "identity(dt)" in answer["errorMessage"], answer
    finally:
        emulator.stop()


def test_a_tables_bloom_properties_and_sort_order_shape_its_data_files(moto):
    import tempfile

    import duckdb
    import pyarrow as pa
    from pyiceberg.transforms import IdentityTransform
    schema = pa.schema([pa.field("id", pa.int64()), pa.field("city", pa.string())])
    properties = {"write.parquet.bloom-filter-enabled.column.id": "true"}
    table = moto.catalog().create_table("analytics.sorted", schema=schema, properties=properties,
                                        location=f"{WAREHOUSE}analytics.db/sorted")
    with table.update_sort_order() as order:
        order.desc("id", IdentityTransform())
    emulator = function(moto, ALLOWED_TABLES="analytics.*")
    try:
        rows = [{"id": (i * 7919) % 10_007, "city": ["Paris", "Lyon"][i % 2]} for i in range(3_000)]
        kind, reply = invoke(emulator, {"rows": rows, "targets": [{"table": "analytics.sorted"}]})
        assert kind == "response", reply
        [path] = reply["tables"][0]["data_files"]
        bucket, key = path.removeprefix("s3://").split("/", 1)
        with tempfile.NamedTemporaryFile(suffix=".parquet") as local:
            local.write(moto.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
            local.flush()
            ids = pq.read_table(local.name).column("id").to_pylist()
            assert ids == sorted((r["id"] for r in rows), reverse=True)
            filtered = duckdb.sql(f"SELECT DISTINCT path_in_schema FROM parquet_metadata('{local.name}') "
                                  "WHERE bloom_filter_offset IS NOT NULL").fetchall()
            assert filtered == [("id",)]
            probe = lambda v: all(e for (e,) in duckdb.sql(
                f"SELECT bloom_filter_excludes FROM parquet_bloom_probe('{local.name}', 'id', {v})").fetchall())
            assert not any(probe(r["id"]) for r in rows[:300])
            assert sum(probe(20_000 + v) for v in range(300)) > 280
        read = moto.catalog().load_table("analytics.sorted").scan().to_arrow().to_pylist()
        assert sorted(r["id"] for r in read) == sorted(r["id"] for r in rows)
    finally:
        emulator.stop()


def sqs(*messages):
    """An SQS batch of (message id, body) as Lambda's event source mapping delivers it."""
    return {"Records": [{"messageId": mid, "receiptHandle": "h", "body": json.dumps(body), "attributes": {},
                         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}
                        for mid, body in messages]}


def test_an_sqs_batch_commits_its_good_messages_in_one_snapshot_and_reports_the_bad_one(moto):
    import pyarrow as pa
    schema = pa.schema([pa.field("id", pa.int64())])
    moto.catalog().create_table("analytics.queued", schema=schema, location=f"{WAREHOUSE}analytics.db/queued")
    emulator = function(moto, ALLOWED_TABLES="analytics.*")
    s3 = moto.client("s3")
    try:
        target = [{"table": "analytics.queued"}]
        folder = {"prefix": f"s3://{LAKE}/out/queued/", "compression": "zstd"}
        good = ("m-good", {"rows": [{"id": 1}, {"id": 2}], "targets": target})
        other = ("m-other", {"rows": [{"id": 3}], "targets": target + [folder]})
        bad = ("m-bad", {"rows": [{"id": "four"}], "targets": target})
        kind, reply = invoke(emulator, sqs(good, bad, other))
        assert kind == "response" and reply["batchItemFailures"] == [{"itemIdentifier": "m-bad"}], reply
        table = moto.catalog().load_table("analytics.queued")
        assert len(table.snapshots()) == 1
        recorded = table.snapshots()[0].summary.additional_properties["rows-to-parquet.identity"]
        assert recorded.split("\n") == ["request m-good", "request m-other"], recorded
        assert sorted(r["id"] for r in table.scan().to_arrow().to_pylist()) == [1, 2, 3]
        assert len(moto.keys(LAKE, "out/queued/")) == 1
        # Lambda redelivers the batch's failed message, and SQS may redeliver a good one.
        kind, again = invoke(emulator, sqs(good, ("m-bad", {"rows": [{"id": 4}], "targets": target})))
        assert kind == "response" and again["batchItemFailures"] == [], again
        table = moto.catalog().load_table("analytics.queued")
        assert len(table.snapshots()) == 2
        assert table.current_snapshot().summary.additional_properties["rows-to-parquet.identity"] == "request m-bad"
        assert sorted(r["id"] for r in table.scan().to_arrow().to_pylist()) == [1, 2, 3, 4]
        stored, referenced = table_files(moto, table)
        assert stored - referenced == set(), "orphan files in the table's location"

        # One object notified twice in one batch (S3 delivers at least once): committed once.
        s3.put_object(Bucket=LAKE, Key="in/q/once.ndjson", Body=b'{"id": 5}\n')
        defaults = json.dumps(target)
        notified = function(moto, ALLOWED_TABLES="analytics.*", DEFAULT_TARGETS=defaults)
        try:
            twice = [(f"m-n{i}", notification("in/q/once.ndjson")) for i in range(2)]
            kind, reply = invoke(notified, sqs(*twice))
            assert kind == "response" and reply["batchItemFailures"] == [], reply
        finally:
            notified.stop()
        table = moto.catalog().load_table("analytics.queued")
        assert len(table.snapshots()) == 3
        assert sorted(r["id"] for r in table.scan().to_arrow().to_pylist()) == [1, 2, 3, 4, 5]
        stored, referenced = table_files(moto, table)
        assert stored - referenced == set(), "the duplicate's data file was left"
    finally:
        emulator.stop()


def test_a_table_created_before_a_failure_stays_readable(moto):
    s3 = moto.client("s3")
    emulator = function(moto, TABLE_WAREHOUSE=WAREHOUSE, ALLOWED_TABLES="analytics.*")
    try:
        # A bad line past the first chunk: the table is created, then the stream fails.
        lines = "".join(json.dumps({"id": i}) + "\n" for i in range(300_000)) + "not json\n"
        s3.put_object(Bucket=LAKE, Key="in/broken.ndjson", Body=lines.encode())
        event = {"source": {"uri": f"s3://{LAKE}/in/broken.ndjson"}, "schema": "id BIGINT",
                 "targets": [{"table": "analytics.half"}]}
        kind, answer = invoke(emulator, event)
        assert (kind, answer["errorType"]) == ("error", "InvalidEvent"), answer
        table = moto.catalog().load_table("analytics.half")
        assert table.snapshots() == [] and len(table.scan().to_arrow()) == 0
        assert moto.keys(LAKE, "warehouse/analytics.db/half/data/") == []
    finally:
        emulator.stop()


def test_a_whole_prefix_job_is_one_snapshot_committed_once(moto):
    s3 = moto.client("s3")
    emulator = function(moto, TABLE_WAREHOUSE=WAREHOUSE, ALLOWED_TABLES="analytics.*")
    try:
        keys = [f"in/job/part-{i}.ndjson" for i in range(6)]
        for i, key in enumerate(keys):
            rows = [{"id": i * 100 + n, "dt": f"2024-01-0{1 + n % 3}"} for n in range(100)]
            s3.put_object(Bucket=LAKE, Key=key, Body="".join(json.dumps(r) + "\n" for r in rows).encode())
        targets = [{"table": "analytics.job"}, {"prefix": f"s3://{LAKE}/out/job/", "compression": "snappy"}]
        batch_input = {"bucket": LAKE, "targets": targets, "schema": "id BIGINT, dt STRING",
                       "partition_by": ["dt"], "manifests": f"s3://{LAKE}/jobs/run-1/batches/"}
        replies = []
        for b in range(0, len(keys), 3):
            kind, reply = invoke(emulator, {"Items": [{"Key": k} for k in keys[b:b + 3]], "BatchInput": batch_input})
            assert kind == "response", reply
            # A reference, whatever the batch wrote: 3 partitions, one file each for all 3 objects.
            assert (reply["batch"]["rows"], reply["batch"]["data_files"]) == (300, 3), reply
            assert len(json.dumps(reply)) < 1024
            replies.append(reply)
        # The batches committed nothing: the table (created by the first) has no snapshot.
        assert moto.catalog().load_table("analytics.job").snapshots() == []
        # A retried batch rewrites its own files and manifest: nothing more is left.
        before = moto.keys(LAKE, "warehouse/")
        kind, again = invoke(emulator, {"Items": [{"Key": k} for k in keys[:3]], "BatchInput": batch_input})
        assert kind == "response" and again == replies[0], again
        assert moto.keys(LAKE, "warehouse/") == before

        results, arn = map_run(moto, LAKE, "run-1", replies)
        finish = {"commit": {"phase": "finish", "results": results, "map_run": arn}, "targets": targets}
        kind, done = invoke(emulator, finish)
        assert kind == "response", done
        assert done["tables"] == [{"table": "analytics.job", "snapshot_id": done["tables"][0]["snapshot_id"],
                                   "already_committed": False, "rows": 600, "data_files": 6}], done
        # The folder too: one file per partition per batch, not per object.
        assert done["markers"][0]["objects"] == 2 * 3, done
        table = moto.catalog().load_table("analytics.job")
        assert len(table.snapshots()) == 1
        assert table.snapshots()[0].summary.additional_properties["rows-to-parquet.identity"] == f"job {arn}"
        got = table.scan().to_arrow()
        assert sorted(got.column("id").to_pylist()) == [i * 100 + n for i in range(6) for n in range(100)]
        assert {f["partition"]["dt"] for f in table.inspect.files().to_pylist()} == {"2024-01-01", "2024-01-02", "2024-01-03"}
        stored, referenced = table_files(moto, table)
        assert stored - referenced == set(), "orphan files in the table's location"
        # The finish retried (Step Functions' Retry): the job is committed once.
        kind, twice = invoke(emulator, finish)
        assert kind == "response" and twice["tables"][0]["already_committed"] is True, twice
        assert twice["tables"][0]["snapshot_id"] == done["tables"][0]["snapshot_id"]
        assert len(moto.catalog().load_table("analytics.job").snapshots()) == 1

        # A run with a failed batch: nothing committed, its data files and manifests removed.
        batch_input["manifests"] = f"s3://{LAKE}/jobs/run-2/batches/"
        kind, reply = invoke(emulator, {"Items": [{"Key": keys[0]}], "BatchInput": batch_input})
        assert kind == "response", reply
        assert len(moto.keys(LAKE, "warehouse/")) > len(before) and moto.keys(LAKE, "jobs/run-2/batches/")
        results, arn = map_run(moto, LAKE, "run-2", [reply], failed=1)
        kind, answer = invoke(emulator, {"commit": {"phase": "finish", "results": results, "map_run": arn},
                                         "targets": targets})
        assert (kind, answer["errorType"]) == ("error", "JobIncomplete"), answer
        table = moto.catalog().load_table("analytics.job")
        assert len(table.snapshots()) == 1
        stored, referenced = table_files(moto, table)
        assert stored - referenced == set(), "the incomplete run's data files were left"
        assert moto.keys(LAKE, "jobs/run-2/batches/") == []

        # Without a manifests folder a batch cannot hand its files to the finish: refused.
        del batch_input["manifests"]
        kind, answer = invoke(emulator, {"Items": [{"Key": keys[0]}], "BatchInput": batch_input})
        assert (kind, answer["errorType"]) == ("error", "InvalidEvent") and "manifests" in answer["errorMessage"], answer
    finally:
        emulator.stop()


def test_a_dry_run_shows_the_schema_and_data_files_and_writes_nothing(moto):
    import pyarrow as pa
    schema = pa.schema([pa.field("id", pa.int64())])
    moto.catalog().create_table("analytics.dry", schema=schema, location=f"{WAREHOUSE}analytics.db/dry")
    emulator = function(moto, TABLE_WAREHOUSE=WAREHOUSE, ALLOWED_TABLES="analytics.*")
    s3 = moto.client("s3")
    try:
        s3.put_object(Bucket=LAKE, Key="in/dry/a.ndjson", Body=b'{"id": 1, "dt": "d1"}\n{"id": 2, "dt": "d2"}\n')
        before = moto.keys(LAKE)
        rows = [{"id": 1, "dt": "d1"}, {"id": 2, "dt": "d2"}, {"id": 3, "dt": "d2"}]
        # A table to be created, partitioned: one file per partition, under its location.
        kind, reply = invoke(emulator, {"rows": rows, "dry_run": True, "partition_by": ["dt"],
                                        "targets": [{"table": "analytics.planned"}]})
        assert kind == "response", reply
        planned = reply["tables"][0]
        assert (planned["created"], planned["snapshot_id"], planned["rows"]) == (True, None, 3), planned
        folders = sorted(path.split("/")[-2] for path in planned["data_files"])
        assert folders == ["dt=d1", "dt=d2"], planned["data_files"]
        assert all(p.startswith(f"{WAREHOUSE}analytics.db/planned/data/") for p in planned["data_files"])
        # An existing table evolved: the schema as it would be after the commit.
        kind, reply = invoke(emulator, {"rows": rows, "dry_run": True, "schema_evolution": "add_columns",
                                        "targets": [{"table": "analytics.dry"}]})
        assert kind == "response", reply
        assert (reply["tables"][0]["schema"], len(reply["tables"][0]["data_files"])) == ("id BIGINT, dt STRING", 1), reply
        # A source: streamed, measured, dropped.
        kind, reply = invoke(emulator, {"source": {"uri": f"s3://{LAKE}/in/dry/a.ndjson"}, "dry_run": True,
                                        "schema": "id BIGINT, dt STRING", "schema_evolution": "add_columns",
                                        "targets": [{"table": "analytics.dry"}]})
        assert kind == "response" and reply["rows"] == 2 and len(reply["tables"][0]["data_files"]) == 1, reply
        assert moto.keys(LAKE) == before
        assert [t["Name"] for t in moto.client("glue").get_tables(DatabaseName="analytics")["TableList"]
                if t["Name"] == "planned"] == []
        table = moto.catalog().load_table("analytics.dry")
        assert table.snapshots() == [] and [f.name for f in table.schema().fields] == ["id"]
    finally:
        emulator.stop()
