"""Folder targets with a Glue table (`glue_table`, Hive datasets) through the built `bootstrap`
under the Runtime API emulator, against moto's Glue and S3 behind a proxy that holds moto to
Glue's own rules (a stale `VersionId` refused, at most 100 partitions per
`BatchCreatePartition`):

- inline rows create the table as a crawler would, register their partitions, and a later
  write registers only the new ones; Spark reads the table as Glue defines it (its Hive DDL
  and partitions, over the objects written);
- a dry run reads the catalog and says what it would do, and creates nothing;
- every refusal (a new column without evolution, a type change, other partition keys, a table
  over another folder, a table outside ALLOWED_TABLES) writes nothing and leaves the table as
  it was; with evolution the new column is appended;
- a source object with 250 partitions registers them in calls of at most 100;
- a whole-prefix job's batches leave the catalog alone, and its finish step creates the table
  and registers every partition once, however often it runs; a later job's finish with
  `overwrite` leaves only its own files and partitions;
- each write mode, with a reader listing the folder all along: `overwrite_partitions` replaces
  only the partitions written, `overwrite` the whole folder and the table's other partitions
  (after the new objects are visible: the reader never sees a folder or a rewritten partition
  empty), a dry run lists what would go, and a mode is refused where it cannot apply.

Run by scripts/test after the debug binaries are built."""
import pathlib
import sys
import threading

import json

import botocore.exceptions
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from local_catalog import Moto, environment  # noqa: E402
from helpers import function, invoke, map_run  # noqa: E402

LAKE = "dataset-lake"
ROWS = [{"user": "ann", "clicks": 3, "dt": "2024-01-01"},
        {"user": "bob", "clicks": 5, "dt": "2024-01-02"}]


@pytest.fixture(scope="module")
def moto():
    with environment():
        server = Moto(buckets=[LAKE], databases=["analytics"])
        yield server
        server.stop()


@pytest.fixture
def emulator(moto, glue):
    started = function(moto, AWS_ENDPOINT_URL_GLUE=glue.endpoint, ALLOWED_TABLES="analytics.*")
    yield started
    started.stop()


def table(moto, name):
    """The Glue table `analytics.<name>`, or None."""
    try:
        return moto.client("glue").get_table(DatabaseName="analytics", Name=name)["Table"]
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "EntityNotFoundException", e
        return None


def columns(glue_table):
    return [(c["Name"], c["Type"]) for c in glue_table["StorageDescriptor"]["Columns"]]


def partitions(moto, name):
    """Each partition's values and location."""
    pages = moto.client("glue").get_paginator("get_partitions").paginate(DatabaseName="analytics", TableName=name)
    return {tuple(p["Values"]): p["StorageDescriptor"]["Location"] for page in pages for p in page["Partitions"]}


def test_a_folder_keeps_its_glue_table_in_step(moto, emulator, spark, tmp_path):
    prefix = f"s3://{LAKE}/out/clicks/"
    target = {"prefix": prefix, "compression": "snappy", "glue_table": "analytics.clicks_raw"}
    event = {"rows": ROWS, "targets": [target], "partition_by": ["dt"]}

    kind, dry = invoke(emulator, {**event, "dry_run": True})
    assert kind == "response", dry
    assert dry["glue_tables"] == [{"table": "analytics.clicks_raw", "created": True, "columns_added": [],
                                   "partitions": 2, "partitions_added": None}], dry
    assert table(moto, "clicks_raw") is None and moto.keys(LAKE, "out/clicks/") == []

    kind, reply = invoke(emulator, event)
    assert kind == "response", reply
    assert reply["glue_tables"] == [{**dry["glue_tables"][0], "partitions_added": 2}], reply
    made = table(moto, "clicks_raw")
    assert made["TableType"] == "EXTERNAL_TABLE" and made["Parameters"]["classification"] == "parquet"
    descriptor = made["StorageDescriptor"]
    assert descriptor["Location"] == prefix
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    assert descriptor["InputFormat"] == "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert columns(made) == [("user", "string"), ("clicks", "bigint")]
    assert [(c["Name"], c["Type"]) for c in made["PartitionKeys"]] == [("dt", "string")]
    registered = partitions(moto, "clicks_raw")
    assert registered == {("2024-01-01",): f"{prefix}dt=2024-01-01/", ("2024-01-02",): f"{prefix}dt=2024-01-02/"}
    for obj in reply["objects"]:
        assert obj["uri"].startswith(registered[(obj["partition"].split("=", 1)[1],)]), obj

    # A later write: one partition the table has (left as it is), one new.
    more = [{"user": "cy", "clicks": 1, "dt": "2024-01-02"}, {"user": "di", "clicks": 2, "dt": "2024-01-03"}]
    kind, second = invoke(emulator, {**event, "rows": more})
    assert kind == "response", second
    assert second["glue_tables"] == [{"table": "analytics.clicks_raw", "created": False, "columns_added": [],
                                      "partitions": 2, "partitions_added": 1}], second
    registered = partitions(moto, "clicks_raw")
    assert sorted(registered) == [("2024-01-01",), ("2024-01-02",), ("2024-01-03",)]

    # Spark reads the table as Glue defines it: its Hive DDL, then its partitions, over a copy
    # of the folder.
    local = tmp_path / "clicks"
    s3 = moto.client("s3")
    for key in moto.keys(LAKE, "out/clicks/"):
        path = local / key[len("out/clicks/"):]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s3.get_object(Bucket=LAKE, Key=key)["Body"].read())
    made = table(moto, "clicks_raw")
    serde = made["StorageDescriptor"]
    spark.sql(
        "CREATE EXTERNAL TABLE glue_clicks_raw ("
        + ", ".join(f"`{n}` {t}" for n, t in columns(made))
        + ") PARTITIONED BY (" + ", ".join(f"`{c['Name']}` {c['Type']}" for c in made["PartitionKeys"]) + ")"
        + f" ROW FORMAT SERDE '{serde['SerdeInfo']['SerializationLibrary']}'"
        + f" STORED AS INPUTFORMAT '{serde['InputFormat']}' OUTPUTFORMAT '{serde['OutputFormat']}'"
        + f" LOCATION '{local.as_uri()}/'")
    for (value,), location in registered.items():
        where = location.replace(prefix, f"{local.as_uri()}/")
        spark.sql(f"ALTER TABLE glue_clicks_raw ADD PARTITION (dt='{value}') LOCATION '{where}'")
    got = sorted((r["user"], r["clicks"], r["dt"]) for r in spark.table("glue_clicks_raw").collect())
    assert got == sorted((r["user"], r["clicks"], r["dt"]) for r in ROWS + more)


def test_every_refusal_writes_nothing_and_evolution_appends_the_column(moto, emulator):
    prefix = f"s3://{LAKE}/out/people/"
    target = {"prefix": prefix, "compression": "zstd", "glue_table": "analytics.people"}
    kind, reply = invoke(emulator, {"rows": ROWS, "targets": [target], "partition_by": ["dt"]})
    assert kind == "response" and reply["glue_tables"][0]["created"] is True, reply
    other = {"prefix": f"s3://{LAKE}/out/elsewhere/", "compression": "zstd", "glue_table": "analytics.people"}
    cases = [
        ([{**ROWS[0], "country": "fr"}], target, {}, "TableSchemaMismatch", "country string"),
        ([{**ROWS[0], "clicks": "many"}], target, {"schema_evolution": "add_columns"}, "TableSchemaMismatch",
         "`clicks` is bigint in the table and string"),
        (ROWS, target, {"partition_by": ["user"]}, "TableSchemaMismatch", "partitioned by (dt string)"),
        (ROWS, other, {}, "InvalidTarget", "not over the target folder"),
        (ROWS, {**target, "glue_table": "raw.people"}, {}, "TableNotAllowed", "ALLOWED_TABLES"),
    ]
    before = (moto.keys(LAKE, "out/"), table(moto, "people"), partitions(moto, "people"))
    for rows, to, extra, error_type, says in cases:
        event = {"rows": rows, "targets": [to], "partition_by": ["dt"], **extra}
        kind, answer = invoke(emulator, event)
        assert (kind, answer.get("errorType")) == ("error", error_type), (event, answer)
        assert says in answer["errorMessage"], answer
        assert (moto.keys(LAKE, "out/"), table(moto, "people"), partitions(moto, "people")) == before, event

    kind, grown = invoke(emulator, {"rows": [{**ROWS[0], "country": "fr", "dt": "2024-02-01"}], "targets": [target],
                                    "partition_by": ["dt"], "schema_evolution": "add_columns"})
    assert kind == "response", grown
    assert grown["glue_tables"][0]["columns_added"] == ["country"], grown
    assert columns(table(moto, "people")) == [("user", "string"), ("clicks", "bigint"), ("country", "string")]
    assert ("2024-02-01",) in partitions(moto, "people")


def test_a_source_of_250_partitions_registers_them_in_calls_of_at_most_100(moto, glue, emulator):
    s3 = moto.client("s3")
    lines = "".join(f'{{"k": {k}, "v": "x{k}"}}\n' for k in range(250)).encode()
    s3.put_object(Bucket=LAKE, Key="in/many.ndjson", Body=lines)
    prefix = f"s3://{LAKE}/out/many/"
    calls = glue.partition_calls
    kind, reply = invoke(emulator, {"source": {"uri": f"s3://{LAKE}/in/many.ndjson"}, "partition_by": ["k"],
                                    "targets": [{"prefix": prefix, "compression": "snappy",
                                                 "glue_table": "analytics.many"}]})
    assert kind == "response", reply
    assert reply["glue_tables"][0]["partitions_added"] == 250, reply["glue_tables"]
    assert glue.partition_calls - calls == 3
    registered = partitions(moto, "many")
    assert sorted(int(v) for (v,) in registered) == list(range(250))
    assert [(c["Name"], c["Type"]) for c in table(moto, "many")["PartitionKeys"]] == [("k", "bigint")]


def test_a_whole_prefix_job_registers_its_partitions_once_at_the_finish(moto, emulator):
    s3 = moto.client("s3")
    keys = [f"in/job/part-{i}.ndjson" for i in range(4)]
    for i, key in enumerate(keys):
        rows = [{"id": i * 10 + n, "dt": f"2024-03-0{1 + (i + n) % 3}"} for n in range(10)]
        s3.put_object(Bucket=LAKE, Key=key, Body="".join(f'{{"id": {r["id"]}, "dt": "{r["dt"]}"}}\n' for r in rows).encode())
    targets = [{"prefix": f"s3://{LAKE}/out/job/", "compression": "snappy", "glue_table": "analytics.job"}]
    batch_input = {"bucket": LAKE, "targets": targets, "partition_by": ["dt"],
                   "manifests": f"s3://{LAKE}/jobs/glue-run/batches/"}
    replies = []
    for b in range(0, len(keys), 2):
        kind, reply = invoke(emulator, {"Items": [{"Key": k} for k in keys[b:b + 2]], "BatchInput": batch_input})
        assert kind == "response" and reply["batch"]["rows"] == 20, reply
        replies.append(reply)
    # The batches leave the catalog to the finish: no reader sees a table before the job is whole.
    assert table(moto, "job") is None

    results, arn = map_run(moto, LAKE, "glue-run", replies)
    finish = {"commit": {"phase": "finish", "results": results, "map_run": arn}, "targets": targets}
    kind, done = invoke(emulator, finish)
    assert kind == "response", done
    assert done["glue_tables"] == [{"table": "analytics.job", "created": True, "columns_added": [],
                                    "partitions": 3, "partitions_added": 3}], done
    assert columns(table(moto, "job")) == [("id", "bigint")]
    assert sorted(partitions(moto, "job")) == [("2024-03-01",), ("2024-03-02",), ("2024-03-03",)]
    kind, again = invoke(emulator, finish)
    assert kind == "response" and again["glue_tables"][0]["partitions_added"] == 0, again
    assert again["glue_tables"][0]["created"] is False

    # A later job that overwrites: only its own files, and its own partition, are left.
    s3.put_object(Bucket=LAKE, Key="in/job2/only.ndjson", Body=b'{"id": 999, "dt": "2024-03-01"}\n')
    second = {**batch_input, "manifests": f"s3://{LAKE}/jobs/glue-run-2/batches/"}
    kind, reply = invoke(emulator, {"Items": [{"Key": "in/job2/only.ndjson"}], "BatchInput": second})
    assert kind == "response", reply
    results, arn = map_run(moto, LAKE, "glue-run-2", [reply])
    kind, done = invoke(emulator, {"commit": {"phase": "finish", "results": results, "map_run": arn,
                                              "mode": "overwrite"}, "targets": targets})
    assert kind == "response", done
    left = moto.keys(LAKE, "out/job/")
    # The first job's files: two batches, one file per partition each.
    assert done["removed"]["objects"] == 2 * 3 and done["removed"]["glue_partitions"] == 2, done
    marker = json.loads(s3.get_object(Bucket=LAKE, Key="out/job/_SUCCESS")["Body"].read())
    assert left == sorted(["out/job/_SUCCESS"] + [f"out/job/{f}" for f in marker["filenames"]]), left
    assert len(marker["filenames"]) == 1 and sorted(partitions(moto, "job")) == [("2024-03-01",)]

    # Without a manifests folder, a batch could not hand its columns to the finish: refused.
    del batch_input["manifests"]
    kind, answer = invoke(emulator, {"Items": [{"Key": keys[0]}], "BatchInput": batch_input})
    assert (kind, answer["errorType"]) == ("error", "InvalidEvent") and "manifests" in answer["errorMessage"], answer


class Reader(threading.Thread):
    """Lists a folder over and over while writes run: every listing, as a set of keys."""

    def __init__(self, moto, prefix):
        super().__init__(daemon=True)
        self.moto, self.prefix, self.listings = moto, prefix, []
        self.done = threading.Event()

    def run(self):
        s3 = self.moto.client("s3")
        while not self.done.is_set():
            page = s3.list_objects_v2(Bucket=LAKE, Prefix=self.prefix)
            self.listings.append({o["Key"] for o in page.get("Contents", [])})

    def stop(self):
        self.done.set()
        self.join()
        return self.listings


def test_each_mode_replaces_what_it_should_and_a_reader_never_sees_a_gap(moto, emulator):
    folder = "out/modes/"
    target = {"prefix": f"s3://{LAKE}/{folder}", "compression": "snappy", "glue_table": "analytics.modes"}
    day = lambda d, who: {"user": who, "clicks": 1, "dt": f"2024-04-0{d}"}

    def write(rows, request_id, **extra):
        kind, reply = invoke(emulator, {"rows": rows, "targets": [target], "partition_by": ["dt"], **extra},
                             request_id=request_id)
        assert kind == "response", reply
        return reply

    first = write([day(1, "ann"), day(2, "bob")], "first")
    old = {o["partition"]: o["key"] for o in first["objects"]}
    assert "removed" not in first, first

    reader = Reader(moto, folder)
    reader.start()
    replaced = write([day(2, "cy")], "second", mode="overwrite_partitions")
    listings = reader.stop()
    assert replaced["removed"] == {"objects": 1, "uris": [f"s3://{LAKE}/{old['dt=2024-04-02']}"],
                                   "glue_partitions": 0}, replaced
    assert moto.keys(LAKE, folder) == sorted([old["dt=2024-04-01"], replaced["objects"][0]["key"]])
    # The reader: day 1 never touched, day 2 never empty (old, both, then new).
    assert listings and all(old["dt=2024-04-01"] in keys for keys in listings)
    assert all(any(k.startswith(f"{folder}dt=2024-04-02/") for k in keys) for keys in listings)

    kept = moto.keys(LAKE, folder)
    dry = write([day(3, "di")], "third", mode="overwrite", dry_run=True)
    assert dry["removed"]["objects"] == 2 and dry["removed"]["glue_partitions"] == 2, dry
    assert sorted(u.split("/", 3)[3] for u in dry["removed"]["uris"]) == kept
    assert moto.keys(LAKE, folder) == kept and len(partitions(moto, "modes")) == 2

    reader = Reader(moto, folder)
    reader.start()
    overwritten = write([day(3, "di")], "third", mode="overwrite")
    listings = reader.stop()
    assert overwritten["removed"]["objects"] == 2 and overwritten["removed"]["glue_partitions"] == 2, overwritten
    new = overwritten["objects"][0]["key"]
    assert moto.keys(LAKE, folder) == [new]
    assert sorted(partitions(moto, "modes")) == [("2024-04-03",)]
    # Never an empty folder: the old objects until the new one is there.
    assert listings and all(keys for keys in listings)
    assert all(new in keys or set(kept) <= keys for keys in listings)

    # Where a mode cannot apply, it is refused before anything is written.
    for event, says in [
        ({"rows": [day(4, "ed")], "targets": [target, {"table": "analytics.iceberg"}], "mode": "overwrite"},
         "only appended to"),
        ({"Items": [{"Key": "in/many.ndjson"}], "BatchInput": {"bucket": LAKE, "targets": [target],
                                                               "mode": "overwrite"}}, "commit.mode"),
    ]:
        kind, answer = invoke(emulator, event)
        assert (kind, answer.get("errorType")) == ("error", "InvalidEvent") and says in answer["errorMessage"], answer
    assert moto.keys(LAKE, folder) == [new]
