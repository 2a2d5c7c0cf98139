"""Iceberg table targets through the built `bootstrap` (under the Runtime API emulator),
against moto's server as the Glue Data Catalog and S3, read back with pyiceberg as an engine
reads them:

- inline rows create the table from TABLE_WAREHOUSE, and land beside a folder target;
- a retried invocation (the same request id) adds nothing; another one adds a snapshot;
- the data files carry the table's field ids, their manifest entries the metrics engines
  prune on, and the Glue table is what Iceberg's Glue catalog writes;
- every refusal (a missing table, a table outside ALLOWED_TABLES, a column the table lacks,
  a value its type cannot take) writes nothing anywhere.

Run by scripts/test after the debug binaries are built; CARGO_TARGET_DIR comes from
scripts/env.sh, moto and pyiceberg from the virtualenv scripts/setup makes."""
import json
import os
import pathlib
import sys

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from local_catalog import Moto, environment  # noqa: E402
from emulator import Emulator  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
BOOTSTRAP = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))) / "debug" / "rows-to-parquet"
LAKE = "lake"
WAREHOUSE = f"s3://{LAKE}/warehouse/"
ROWS = [{"name": "John Doe", "age": 30, "city": "New York"},
        {"name": "Jane Roe", "age": 41, "city": "Chicago"},
        {"name": "Max Mustermann", "age": None, "city": "Berlin"}]


@pytest.fixture(scope="module")
def moto():
    environment()
    server = Moto(buckets=[LAKE], databases=["analytics", "raw"])
    yield server
    server.stop()


def function(moto, **env):
    emulator = Emulator(BOOTSTRAP, {**moto.function_env(), **env})
    emulator.init_ms()
    return emulator


def invoke(emulator, event, request_id=None):
    request_id = emulator.submit(json.dumps(event).encode(), request_id=request_id)
    answer = emulator.answer(request_id, 60)
    assert answer is not None, "no answer"
    return answer[0], answer[1]


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
            (without_warehouse, {"table": "raw.by_name"}, [{"id": 1}], "InvalidEvent", "partitioned"),
            (without_warehouse, {"table": "raw.people"}, [{"id": 1}], "InvalidEvent", "inline `rows`"),
        ]
        for emulator, target, rows, error_type, word in cases:
            event = {"rows": rows, "targets": [target, {"prefix": f"s3://{LAKE}/out/refused/", "compression": "zstd"}]}
            if word == "inline `rows`":
                event = {"source": {"uri": f"s3://{LAKE}/in/a.ndjson"}, "targets": event["targets"]}
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
