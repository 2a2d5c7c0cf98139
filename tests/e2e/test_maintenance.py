"""Table maintenance through the built `bootstrap` (under the Runtime API emulator), against
moto's server as the Glue Data Catalog and S3, each step read back by pyiceberg and by
DuckDB 1.4.4's iceberg extension, at the current snapshot and at an older retained one:

- a table fed by small appends (a data file per partition each), then a dry run (nothing
  changes), rewrite_data_files (one `replace` snapshot, one file per partition, the same
  rows), rewrite_manifests (one manifest), expire_snapshots (old snapshots and the files only
  they reached gone), a retried append after the expiry (recognised: it adds nothing), and
  remove_orphan_files (strays older than the bound gone, the table whole);
- work whose snapshots another engine (pyiceberg) expired, delivered again: still recognised;
- appends racing maintenance through a Glue that refuses a stale VersionId: every row once;
- refusals (a table outside ALLOWED_TABLES, a missing table, a bad parameter) change nothing.

Run by scripts/test; DUCKDB_ICEBERG_VENV comes from scripts/env.sh."""
import json
import pathlib
import sys
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import Emulator  # noqa: E402
from helpers import BOOTSTRAP, function, invoke  # noqa: E402
from iceberg_readers import duckdb_scan, pyiceberg_scan  # noqa: E402
from local_catalog import Moto, VersionedGlue, environment  # noqa: E402

LAKE = "lake"
WAREHOUSE = f"s3://{LAKE}/warehouse/"
TABLES = {"TABLE_WAREHOUSE": WAREHOUSE, "ALLOWED_TABLES": "analytics.*"}
DAYS = ["2024-05-01", "2024-05-02"]


@pytest.fixture(scope="module")
def moto():
    with environment():
        server = Moto(buckets=[LAKE], databases=["analytics", "other"])
        yield server
        server.stop()


def append_event(table, first_id, count):
    rows = [{"id": i, "dt": DAYS[i % 2], "name": f"name {i}"} for i in range(first_id, first_id + count)]
    return {"rows": rows, "partition_by": ["dt"], "targets": [{"table": table}]}


def maintain(emulator, table, steps=None, dry_run=False, deadline_s=None):
    event = {"maintain": {"table": table, **(steps or {})}}
    if dry_run:
        event["dry_run"] = True
    request_id = emulator.submit(json.dumps(event).encode(), deadline_s=deadline_s)
    kind, body, _ = emulator.answer(request_id, 120)
    return kind, body


def ids_by_both(moto, name, snapshot_id=None):
    """The `id` column as pyiceberg and as DuckDB read it, each sorted."""
    arrow, _ = pyiceberg_scan(moto, name, snapshot_id, columns=("id",))
    table = moto.catalog().load_table(name)
    rows, _ = duckdb_scan(moto, table.metadata_location, snapshot_id, columns="id")
    return sorted(arrow.column("id").to_pylist()), sorted(r[0] for r in rows)


def live_data_files(moto, name):
    table = moto.catalog().load_table(name)
    return [task.file.file_path for task in table.scan().plan_files()]


def test_every_step_keeps_the_rows_and_leaves_the_table_small(moto):
    name = "analytics.events"
    emulator = function(moto, **TABLES)
    try:
        for i in range(24):
            kind, reply = invoke(emulator, append_event(name, i * 10, 10), request_id=f"append-{i}")
            assert kind == "response", reply
        expected = list(range(240))
        assert ids_by_both(moto, name) == (expected, expected)
        before = moto.catalog().load_table(name)
        # In commit order (the metadata lists them in no particular order).
        snapshots = [s.snapshot_id for s in sorted(before.snapshots(), key=lambda s: s.sequence_number)]
        assert len(snapshots) == 24 and len(live_data_files(moto, name)) == 48

        # A dry run says what each step would do and changes nothing.
        kind, reply = maintain(emulator, name, dry_run=True)
        assert kind == "response", reply
        dry = reply["maintained"]
        assert dry["dry_run"] and dry["rewrite_data_files"]["files_read"] == 48, dry
        assert dry["rewrite_data_files"]["partitions"] == 2
        assert dry["rewrite_manifests"]["files_read"] == 24 and dry["rewrite_manifests"]["files_written"] == 1
        assert moto.catalog().load_table(name).metadata_location == before.metadata_location

        # Compaction: one replace snapshot, one file per partition, every row once.
        kind, reply = maintain(emulator, name, {"rewrite_data_files": {"min_input_files": 5}})
        assert kind == "response", reply
        step = reply["maintained"]["rewrite_data_files"]
        assert (step["partitions"], step["files_read"], step["files_written"]) == (2, 48, 2), step
        table = moto.catalog().load_table(name)
        current = table.current_snapshot()
        assert current.snapshot_id == step["snapshot_id"] and current.summary.operation.value == "replace"
        summary = current.summary.additional_properties
        assert (summary["total-records"], summary["total-data-files"], summary["deleted-data-files"]) == ("240", "2", "48"), summary
        assert len(live_data_files(moto, name)) == 2
        assert ids_by_both(moto, name) == (expected, expected)
        # An older snapshot reads as it did (time travel, both readers).
        assert ids_by_both(moto, name, snapshots[9]) == (list(range(100)), list(range(100)))

        # Manifests merged: one, the rows the same.
        kind, reply = maintain(emulator, name, {"rewrite_manifests": {}})
        assert kind == "response", reply
        step = reply["maintained"]["rewrite_manifests"]
        assert step["files_read"] >= 2 and step["files_written"] == 1, step
        table = moto.catalog().load_table(name)
        assert len(table.current_snapshot().manifests(table.io)) == 1
        assert ids_by_both(moto, name) == (expected, expected)

        # Expiry: all but the last two snapshots, and the files only they reached.
        small = live_data_files_at(moto, name, snapshots[-1])
        kind, reply = maintain(emulator, name, {"expire_snapshots": {"older_than_seconds": 0, "retain_last": 2}})
        assert kind == "response", reply
        step = reply["maintained"]["expire_snapshots"]
        table = moto.catalog().load_table(name)
        assert len(list(table.snapshots())) == 2 and step["snapshots_expired"] == 24, step
        stored = set(moto.keys(LAKE, "warehouse/analytics.db/events/"))
        assert not [f for f in small if f.split(f"s3://{LAKE}/", 1)[1] in stored], "an expired snapshot's data file is left"
        assert step["files_deleted"] >= 48 + 24, step
        assert ids_by_both(moto, name) == (expected, expected)
        parent = table.current_snapshot().parent_snapshot_id
        assert ids_by_both(moto, name, parent) == (expected, expected)

        # Work committed by an expired snapshot and delivered again adds nothing.
        kind, reply = invoke(emulator, append_event(name, 30, 10), request_id="append-3")
        assert kind == "response" and reply["tables"][0]["already_committed"], reply
        assert ids_by_both(moto, name) == (expected, expected)
    finally:
        emulator.stop()

    # Orphans: strays older than the bound go; the table's files stay. The bound is never
    # below the invocation's timeout plus 5 s: a 6 s deadline makes it 11 s.
    s3 = moto.client("s3")
    strays = ["warehouse/analytics.db/events/data/dt=2024-05-01/stray.parquet",
              "warehouse/analytics.db/events/metadata/stray-m0.avro"]
    for key in strays:
        s3.put_object(Bucket=LAKE, Key=key, Body=b"not part of the table")
    kept = set(moto.keys(LAKE, "warehouse/analytics.db/events/")) - set(strays)
    time.sleep(12)
    emulator = Emulator(BOOTSTRAP, {**moto.function_env(), **TABLES}, timeout_s=6)
    try:
        kind, reply = maintain(emulator, name, {"remove_orphan_files": {"older_than_seconds": 0}}, deadline_s=6)
    finally:
        emulator.stop()
    assert kind == "response", reply
    step = reply["maintained"]["remove_orphan_files"]
    assert step["files_deleted"] == 2 and sorted(step["keys"]) == sorted(f"s3://{LAKE}/{k}" for k in strays), step
    assert set(moto.keys(LAKE, "warehouse/analytics.db/events/")) == kept
    assert ids_by_both(moto, name) == (expected, expected)


def test_work_stays_recognised_when_another_engine_expires_its_snapshot(moto):
    """pyiceberg expires the snapshots that recorded the work (as Athena's VACUUM or the Glue
    Data Catalog's retention would: none of them knows this function's identities); the same
    work delivered again still adds nothing, read by both engines."""
    name = "analytics.elsewhere"
    emulator = function(moto, **TABLES)
    try:
        for i in range(3):
            kind, reply = invoke(emulator, append_event(name, i * 10, 10), request_id=f"work-{i}")
            assert kind == "response", reply
        table = moto.catalog().load_table(name)
        current = table.current_snapshot().snapshot_id
        older = [s.snapshot_id for s in table.snapshots() if s.snapshot_id != current]
        table.maintenance.expire_snapshots().by_ids(older).commit()
        assert len(moto.catalog().load_table(name).snapshots()) == 1
        for i in range(3):
            kind, reply = invoke(emulator, append_event(name, i * 10, 10), request_id=f"work-{i}")
            assert kind == "response" and reply["tables"][0]["already_committed"], reply
        expected = list(range(30))
        assert ids_by_both(moto, name) == (expected, expected)
        # New work is still new.
        kind, reply = invoke(emulator, append_event(name, 30, 10), request_id="work-3")
        assert kind == "response" and not reply["tables"][0]["already_committed"], reply
        assert ids_by_both(moto, name) == (list(range(40)), list(range(40)))
    finally:
        emulator.stop()


def live_data_files_at(moto, name, snapshot_id):
    table = moto.catalog().load_table(name)
    return [task.file.file_path for task in table.scan(snapshot_id=snapshot_id).plan_files()]


def test_appends_racing_maintenance_land_once(moto):
    """Four writers append while maintenance compacts and merges, through a Glue that refuses
    a stale VersionId: every row once, read by both engines."""
    name = "analytics.raced"
    glue = VersionedGlue(moto)
    env = {**moto.function_env(), **TABLES, "AWS_ENDPOINT_URL_GLUE": glue.endpoint}
    first = Emulator(BOOTSTRAP, env)
    writers = [Emulator(BOOTSTRAP, env, timeout_s=120) for _ in range(4)]
    keeper = Emulator(BOOTSTRAP, env, timeout_s=120)
    replies, errors = [], []
    try:
        kind, reply = invoke(first, append_event(name, 0, 10), request_id="seed")
        assert kind == "response", reply

        def write(w, emulator):
            for n in range(6):
                first_id = 10 + (w * 6 + n) * 10
                kind, reply = invoke(emulator, append_event(name, first_id, 10), request_id=f"raced-{w}-{n}")
                if kind != "response":
                    errors.append(reply)

        threads = [threading.Thread(target=write, args=(w, e)) for w, e in enumerate(writers)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            kind, reply = maintain(keeper, name, {"rewrite_data_files": {"min_input_files": 2}, "rewrite_manifests": {}})
            replies.append((kind, reply))
        for t in threads:
            t.join()
        kind, reply = maintain(keeper, name, {"rewrite_data_files": {"min_input_files": 2}})
        replies.append((kind, reply))
    finally:
        for emulator in [first, keeper, *writers]:
            emulator.stop()
        glue.stop()
    assert not errors, errors
    refused = [r for k, r in replies if k != "response"]
    assert all(r["errorType"] == "CommitConflict" for r in refused), refused
    committed = [r for k, r in replies if k == "response" and r["maintained"]["rewrite_data_files"].get("snapshot_id")]
    assert committed, replies
    expected = list(range(250))
    assert ids_by_both(moto, name) == (expected, expected)
    assert glue.conflicts > 0, "the writers and the maintenance never met"


def test_refusals_change_nothing(moto):
    emulator = function(moto, **TABLES)
    try:
        kind, reply = invoke(emulator, append_event("analytics.kept", 0, 4))
        assert kind == "response", reply
        location = moto.catalog().load_table("analytics.kept").metadata_location
        for steps, table, error, word in [
            ({}, "other.kept", "TableNotAllowed", "ALLOWED_TABLES"),
            ({}, "analytics.missing", "TableNotFound", "analytics.missing"),
            ({"expire_snapshots": {"retain_last": 0}}, "analytics.kept", "InvalidEvent", "retain_last"),
            ({"rewrite_data_files": {"min_input_files": 1}}, "analytics.kept", "InvalidEvent", "min_input_files"),
        ]:
            kind, reply = maintain(emulator, table, steps)
            assert (kind, reply["errorType"]) == ("error", error), reply
            assert word in reply["errorMessage"], reply
        assert moto.catalog().load_table("analytics.kept").metadata_location == location
    finally:
        emulator.stop()
