"""A Hive dataset's maintenance (`{"maintain": {"folder": …}}`, a folder with a Glue table)
through the built `bootstrap` under the Runtime API emulator, against moto's Glue and S3
behind the proxy that holds moto to Glue's rules. The table is read as Athena reads it: each
partition's files at the location Glue gives it, `_` and `.` names skipped.

- the first run marks the table for compaction (writes then look where partitions are read)
  and moves nothing until every write that did not look has ended;
- small appends, then a dry run (nothing moves), then `rewrite_data_files`: each partition's
  old small files become one file in a compaction folder, the young ones are carried over
  as they are, the partition moves there, and the table reads every row once;
- a later append follows the moved partition (copied where the table reads it), and
  `overwrite_partitions` replaces what the table reads there;
- `remove_orphan_files` deletes the replaced files once older than the bound, and the table
  still reads every row once;
- appends racing a compaction: every row once;
- refusals: a folder without a Glue table, a step that has no meaning for a folder.

Run by scripts/test after the debug binaries are built."""
import collections
import io
import json
import pathlib
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import Emulator  # noqa: E402
from helpers import BOOTSTRAP, invoke  # noqa: E402
from local_catalog import Moto, environment  # noqa: E402

LAKE = "hive-lake"
DAYS = ["2024-05-01", "2024-05-02"]
# A 16 s deadline: the bound below which a file is young is 16 + 5 s.
DEADLINE_S = 16
YOUNG_S = DEADLINE_S + 5


@pytest.fixture(scope="module")
def moto():
    with environment():
        server = Moto(buckets=[LAKE], databases=["analytics"])
        yield server
        server.stop()


def start(moto, glue, **env):
    return Emulator(BOOTSTRAP, {**moto.function_env(), "AWS_ENDPOINT_URL_GLUE": glue.endpoint,
                                "ALLOWED_TABLES": "analytics.*", **env}, timeout_s=120)


def append(emulator, folder, table, first, count, request_id, mode=None):
    rows = [{"id": i, "dt": DAYS[i % 2]} for i in range(first, first + count)]
    event = {"rows": rows, "partition_by": ["dt"],
             "targets": [{"prefix": folder, "compression": "snappy", "glue_table": table}]}
    if mode:
        event["mode"] = mode
    kind, reply = invoke(emulator, event, request_id=request_id)
    assert kind == "response", reply
    return reply


def maintain(emulator, maintain_event, dry_run=False, deadline_s=DEADLINE_S):
    event = {"maintain": maintain_event}
    if dry_run:
        event["dry_run"] = True
    request_id = emulator.submit(json.dumps(event).encode(), deadline_s=deadline_s)
    kind, body, _ = emulator.answer(request_id, 120)
    return kind, body


def mark(emulator, folder, table):
    """The first run on a dataset: it marks the table and moves nothing yet."""
    kind, reply = maintain(emulator, {"folder": folder, "glue_table": table, "rewrite_data_files": {}})
    assert kind == "response", reply
    step = reply["maintained"]["rewrite_data_files"]
    assert step["more"] and "is marked for compaction" in step["skipped"], step
    assert step["files_read"] == 0 and step["files_written"] == 0, step


def locations(moto, name):
    pages = moto.client("glue").get_paginator("get_partitions").paginate(DatabaseName="analytics", TableName=name)
    return {p["Values"][0]: p["StorageDescriptor"]["Location"] for page in pages for p in page["Partitions"]}


def direct(moto, location):
    """The data files directly at `location` (an s3:// folder), as Athena lists them."""
    key = location.split(f"s3://{LAKE}/", 1)[1].rstrip("/") + "/"
    names = [k[len(key):] for k in moto.keys(LAKE, key)]
    return [key + n for n in names if "/" not in n and not n.startswith(("_", "."))]


def read_through_catalog(moto, name):
    """Every `(id, dt)` the table reads, counted."""
    s3 = moto.client("s3")
    seen = collections.Counter()
    for dt, location in locations(moto, name).items():
        for key in direct(moto, location):
            body = s3.get_object(Bucket=LAKE, Key=key)["Body"].read()
            for i in pq.read_table(io.BytesIO(body)).column("id").to_pylist():
                seen[(i, dt)] += 1
    return seen


def once(ids):
    return collections.Counter({(i, DAYS[i % 2]): 1 for i in ids})


def test_a_compacted_dataset_reads_every_row_once_and_later_writes_follow(moto, glue):
    folder, table = f"s3://{LAKE}/clicks/", "analytics.clicks"
    emulator = start(moto, glue)
    try:
        append(emulator, folder, table, 0, 4, "old-0")
        home = locations(moto, "clicks")
        mark(emulator, folder, table)
        parameters = moto.client("glue").get_table(DatabaseName="analytics", Name="clicks")["Table"]["Parameters"]
        assert int(parameters["rows_to_parquet.compaction_since"]) <= time.time()
        assert locations(moto, "clicks") == home, "a partition moved before the writes looked"
        for n in range(1, 12):
            append(emulator, folder, table, n * 4, 4, f"old-{n}")
        assert read_through_catalog(moto, "clicks") == once(range(48))
        time.sleep(YOUNG_S + 1)
        append(emulator, folder, table, 48, 4, "young")
        home = locations(moto, "clicks")
        assert all(len(direct(moto, loc)) == 13 for loc in home.values()), home

        kind, reply = maintain(emulator, {"folder": folder, "glue_table": table}, dry_run=True)
        assert kind == "response", reply
        dry = reply["maintained"]["rewrite_data_files"]
        assert (dry["partitions"], dry["files_read"], dry["files_written"]) == (2, 24, 0), dry
        assert locations(moto, "clicks") == home

        kind, reply = maintain(emulator, {"folder": folder, "glue_table": table,
                                          "rewrite_data_files": {"min_input_files": 5}})
        assert kind == "response", reply
        step = reply["maintained"]["rewrite_data_files"]
        assert (step["partitions"], step["files_read"], step["files_written"]) == (2, 24, 2), step
        assert reply["maintained"]["folder"] == folder and "remove_orphan_files" not in reply["maintained"]
        moved = locations(moto, "clicks")
        for dt, location in moved.items():
            assert location.startswith(f"{folder}dt={dt}/_compacted-"), moved
            # One compacted file, and the young file carried over as it was.
            assert len(direct(moto, location)) == 2, direct(moto, location)
            assert len(direct(moto, home[dt])) == 13, "the replaced files stay until a later run"
        assert read_through_catalog(moto, "clicks") == once(range(52))

        # A later append lands in the partitions' own folders and is copied where they are read.
        append(emulator, folder, table, 52, 4, "after")
        assert locations(moto, "clicks") == moved
        assert read_through_catalog(moto, "clicks") == once(range(56))
        # A partition overwrite replaces what the table reads there, the other one untouched.
        append(emulator, folder, table, 100, 1, "rewrite-day-1", mode="overwrite_partitions")
        expected = once([i for i in range(56) if DAYS[i % 2] != DAYS[0]] + [100])
        assert read_through_catalog(moto, "clicks") == expected
    finally:
        emulator.stop()

    # The replaced files go once older than the bound (a 6 s deadline makes it 11 s); what
    # the table reads stays.
    time.sleep(12)
    keeper = start(moto, glue)
    try:
        kind, reply = maintain(keeper, {"folder": folder, "glue_table": table,
                                        "remove_orphan_files": {"older_than_seconds": 0}}, deadline_s=6)
        assert kind == "response", reply
        step = reply["maintained"]["remove_orphan_files"]
        # dt=2024-05-02: its 12 old files, the young one and the later append; dt=2024-05-01:
        # the overwrite's own file there (its copy is what the table reads).
        assert step["files_deleted"] == 15, step
        assert read_through_catalog(moto, "clicks") == expected
        for dt in DAYS:
            assert direct(moto, f"{folder}dt={dt}/") == [], "a replaced file is left"
    finally:
        keeper.stop()


def test_an_unpartitioned_dataset_moves_its_table(moto, glue):
    folder, table = f"s3://{LAKE}/flat/", "analytics.flat"
    emulator = start(moto, glue)
    glue_client = moto.client("glue")

    def table_location():
        return glue_client.get_table(DatabaseName="analytics", Name="flat")["Table"]["StorageDescriptor"]["Location"]

    def read_table():
        s3 = moto.client("s3")
        ids = collections.Counter()
        for key in direct(moto, table_location()):
            body = s3.get_object(Bucket=LAKE, Key=key)["Body"].read()
            ids.update(pq.read_table(io.BytesIO(body)).column("id").to_pylist())
        return ids

    def write(first, request_id):
        event = {"rows": [{"id": i} for i in range(first, first + 3)],
                 "targets": [{"prefix": folder, "compression": "zstd", "glue_table": table}]}
        kind, reply = invoke(emulator, event, request_id=request_id)
        assert kind == "response", reply

    try:
        write(0, "flat-0")
        mark(emulator, folder, table)
        for n in range(1, 5):
            write(n * 3, f"flat-{n}")
        time.sleep(YOUNG_S + 1)
        kind, reply = maintain(emulator, {"folder": folder, "glue_table": table, "rewrite_data_files": {}})
        assert kind == "response", reply
        step = reply["maintained"]["rewrite_data_files"]
        assert (step["partitions"], step["files_read"], step["files_written"]) == (1, 5, 1), step
        assert table_location().startswith(f"{folder}_compacted-")
        [compacted] = direct(moto, table_location())
        assert compacted.endswith(".zstd.parquet")
        body = moto.client("s3").get_object(Bucket=LAKE, Key=compacted)["Body"].read()
        assert pq.ParquetFile(io.BytesIO(body)).metadata.row_group(0).column(0).compression == "ZSTD"
        assert read_table() == collections.Counter(range(15))
        write(15, "flat-after")
        assert read_table() == collections.Counter(range(18))
    finally:
        emulator.stop()


def test_appends_racing_a_compaction_land_once(moto, glue):
    folder, table = f"s3://{LAKE}/raced/", "analytics.raced"
    seed = start(moto, glue)
    try:
        append(seed, folder, table, 0, 2, "seed-0")
        mark(seed, folder, table)
        for n in range(1, 6):
            append(seed, folder, table, n * 2, 2, f"seed-{n}")
    finally:
        seed.stop()
    time.sleep(YOUNG_S + 1)
    writers = [start(moto, glue) for _ in range(3)]
    keeper = start(moto, glue)
    errors = []
    try:
        def write(w, emulator):
            for n in range(8):
                try:
                    append(emulator, folder, table, 1000 + (w * 8 + n) * 2, 2, f"raced-{w}-{n}")
                except AssertionError as e:
                    errors.append(str(e))

        threads = [threading.Thread(target=write, args=(w, e)) for w, e in enumerate(writers)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        kind, reply = maintain(keeper, {"folder": folder, "glue_table": table,
                                        "rewrite_data_files": {"min_input_files": 2}})
        for t in threads:
            t.join()
        assert kind == "response", reply
        assert reply["maintained"]["rewrite_data_files"]["partitions"] == 2, reply
        assert not errors, errors
        ids = list(range(12)) + [1000 + k for k in range(48)]
        assert read_through_catalog(moto, "raced") == once(ids)
    finally:
        for e in writers + [keeper]:
            e.stop()


def test_a_folder_without_a_glue_table_or_with_a_table_step_is_refused(moto, glue):
    emulator = start(moto, glue)
    try:
        kind, reply = maintain(emulator, {"folder": f"s3://{LAKE}/plain/"})
        assert kind == "error" and reply["errorType"] == "InvalidEvent", reply
        assert "no atomic swap" in reply["errorMessage"], reply
        kind, reply = maintain(emulator, {"folder": f"s3://{LAKE}/plain/", "glue_table": "analytics.x",
                                          "expire_snapshots": {}})
        assert kind == "error" and "only `rewrite_data_files` and `remove_orphan_files`" in reply["errorMessage"], reply
        kind, reply = maintain(emulator, {"folder": f"s3://{LAKE}/plain/", "glue_table": "analytics.missing"})
        assert kind == "error" and reply["errorType"] == "TableNotFound", reply
    finally:
        emulator.stop()
