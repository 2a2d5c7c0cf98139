"""End to end: every sample event in events/ is sent with the AWS CLI v2 (`aws lambda invoke`)
to the built function running under `cargo lambda watch`, which writes to the embedded S3
server. Every object written is read back with pyarrow, DuckDB, polars and PySpark 3.5 (what
Glue runs), and each reader's column types and values must equal what the event asked for:
the types docs/event.md's inference rules give (or the declared `schema`), the rows' values, and
the codec its target named. Invalid events must come back as function errors with the
errorType their `.expect.json` names.

Run by scripts/test, which starts the local loop and sets S3_ENDPOINT, INVOKE_ENDPOINT and
FUNCTION_NAME."""
import datetime
import decimal
import gzip
import json
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import holds  # noqa: E402
EVENTS = sorted(p for p in (ROOT / "events").glob("*.json") if not p.name.endswith(".expect.json"))
DEFAULT_TARGETS = [
    {"prefix": "s3://my-bucket/out/parquet/", "compression": "uncompressed"},
    {"prefix": "s3://my-bucket/out/parquet-snappy/", "compression": "snappy"},
]
# What each event codec is called in Parquet's footer, as pyarrow reports it (pyarrow names
# Parquet's LZ4_RAW "LZ4", and the deprecated Hadoop-framed one "LZ4_HADOOP").
PARQUET_CODEC = {"uncompressed": "UNCOMPRESSED", "snappy": "SNAPPY", "zstd": "ZSTD",
                 "gzip": "GZIP", "lz4": "LZ4", "brotli": "BROTLI"}
UTC = datetime.timezone.utc


def ts(*parts, micros=0):
    return datetime.datetime(*parts, microsecond=micros, tzinfo=UTC)


# Events with a declared schema (or a CSV source): the Spark types and the values every reader
# must give back, written out by hand from the event and docs/event.md's conversion rules.
DECLARED = {
    "typed-every-type": {
        "types": ["string", "int", "string", "date", "timestamp", "decimal(10,2)", "array<string>",
                  "struct<zip:string,geo:struct<lat:double,lon:double>>", "map<string,bigint>",
                  "tinyint", "smallint", "bigint", "float", "double", "boolean", "binary"],
        "rows": [
            {"name": "John Doe", "age": 30, "city": "New York", "born": datetime.date(1995, 3, 14),
             "seen": ts(2026, 11, 27, 9, 30), "price": decimal.Decimal("19.99"), "tags": ["new", "vip"],
             "addr": {"zip": "10001", "geo": {"lat": 40.7128, "lon": -74.006}},
             "attrs": {"visits": 12, "orders": 3}, "level": 3, "rank": 1200, "total": 9007199254740993,
             "ratio": 0.25, "score": 0.1, "active": True, "avatar": b"hello"},
            {"name": "Jane Smith", "age": 25, "city": "Los Angeles", "born": datetime.date(1999, 12, 31),
             "seen": ts(2026, 11, 27, 10, 0, 0, micros=123456), "price": decimal.Decimal("1234567.89"),
             "tags": [], "addr": {"zip": "90001", "geo": None}, "attrs": {}, "level": -128,
             "rank": -32768, "total": -1, "ratio": -1.5, "score": 1e-10, "active": False, "avatar": b""},
            {"name": "Mike Johnson", "age": None, "city": None, "born": None,
             "seen": datetime.datetime.fromtimestamp(1764236400, UTC), "price": None, "tags": None,
             "addr": None, "attrs": None, "level": None, "rank": None, "total": None, "ratio": None,
             "score": None, "active": None, "avatar": None},
        ],
        "not_null": ["name"],
    },
    "typed-json-schema-drop-unknown": {
        "types": ["bigint", "decimal(12,4)", "date"],
        "rows": [
            {"id": 1, "amount": decimal.Decimal("0.1000"), "day": datetime.date(2026, 1, 31)},
            {"id": 2, "amount": decimal.Decimal("2.5000"), "day": datetime.date(2026, 2, 1)},
        ],
        "not_null": ["id"],
    },
    # A CSV export (BOM, CRLF, RFC 4180 quoting): the types Spark's inferSchema gives it, as
    # tests/e2e/test_csv.py checks against Spark itself; a quoted CRLF is kept as it is.
    "source-csv": {
        "types": ["int", "string", "double", "date", "timestamp", "boolean", "string", "bigint"],
        "rows": [
            {"id": 1, "name": "Doe, John", "amount": 19.99, "joined": datetime.date(2024, 5, 1),
             "last_seen": ts(2024, 5, 1, 10, 0), "active": True, "note": 'said "hi"', "visits": 3000000000},
            {"id": 2, "name": "Jane Smith", "amount": 5.0, "joined": datetime.date(2023, 12, 31),
             "last_seen": ts(2024, 5, 2, 8, 30), "active": False, "note": "two\r\nlines", "visits": 4},
            {"id": 3, "name": "Mike Johnson", "amount": None, "joined": datetime.date(2024, 1, 15),
             "last_seen": None, "active": True, "note": None, "visits": 5},
        ],
        "not_null": [],
    },
}


def aws(*args, check=True):
    # One attempt: a function error must not be retried into three invocations.
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "1"}
    return subprocess.run(["aws", *args], capture_output=True, text=True, check=check, env=env)


def invoke(event_path, out_path):
    """`aws lambda invoke` exactly as against AWS, plus the local endpoint. Returns the CLI's
    completed process and the function's response."""
    done = aws("lambda", "invoke", "--endpoint-url", os.environ["INVOKE_ENDPOINT"],
               "--function-name", os.environ["FUNCTION_NAME"], "--cli-binary-format",
               "raw-in-base64-out", "--cli-read-timeout", "300",
               "--payload", f"fileb://{event_path}", str(out_path), check=False)
    response = json.loads(out_path.read_text()) if out_path.exists() else None
    return done, response


def invoke_raw(event_path):
    """The Invoke API over plain HTTP: the function's error document, which the emulator sends
    as the body of an HTTP 500 (AWS sends it with HTTP 200 and X-Amz-Function-Error)."""
    url = f"{os.environ['INVOKE_ENDPOINT']}/2015-03-31/functions/{os.environ['FUNCTION_NAME']}/invocations"
    request = urllib.request.Request(url, data=event_path.read_bytes(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as reply:
        return reply.code, json.loads(reply.read())


def download(uri, directory):
    local = directory / uri.split("/", 3)[3].replace("/", "_")
    aws("s3", "cp", "--endpoint-url", os.environ["S3_ENDPOINT"], uri, str(local))
    return local


# --- what docs/event.md's inference rules give, computed independently in Python -------------

def arrow_type(values):
    present = [v for v in values if v is not None]
    if not present:
        return pa.string()
    if all(isinstance(v, bool) for v in present):
        return pa.bool_()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.int64()
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.float64()
    if all(isinstance(v, str) for v in present):
        return pa.string()
    if all(isinstance(v, dict) for v in present):
        names = list(dict.fromkeys(k for v in present for k in v))
        return pa.struct([(n, arrow_type([v.get(n) for v in present])) for n in names])
    if all(isinstance(v, list) for v in present):
        return pa.list_(arrow_type([x for v in present for x in v]))
    raise AssertionError(f"mixed column in a valid sample event: {[type(v) for v in present]}")


def filled(value, typ):
    """`value` as a reader gives it back: every struct field present (null when missing) and
    integers in float columns as floats."""
    if value is None:
        return None
    if pa.types.is_struct(typ):
        return {f.name: filled(value.get(f.name), f.type) for f in typ}
    if pa.types.is_list(typ):
        return [filled(v, typ.value_type) for v in value]
    if pa.types.is_floating(typ):
        return float(value)
    return value


def fixture_rows(uri):
    """The rows of a source object under events/objects/, read here independently of the
    function: NDJSON by `.ndjson`/`.jsonl`, else a JSON array; `.gz` or `.zst` decompressed."""
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    raw = (ROOT / "events" / "objects" / bucket / key).read_bytes()
    name = key
    if key.endswith(".gz"):
        raw, name = gzip.decompress(raw), key[:-3]
    elif key.endswith(".zst"):
        raw, name = pa.CompressedInputStream(pa.py_buffer(raw), "zstd").read(), key[:-4]
    text = raw.decode()
    if name.endswith((".ndjson", ".jsonl")):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)


def rows_and_targets(event):
    """The rows a sample converts (inline, or those of the object it names) and its targets."""
    if "rows" in event:
        return event["rows"], event.get("targets", DEFAULT_TARGETS)
    if isinstance(event.get("source"), dict):
        return fixture_rows(event["source"]["uri"]), event.get("targets", DEFAULT_TARGETS)
    if "Records" in event:
        s3 = event["Records"][0]["s3"]
        key = urllib.parse.unquote_plus(s3["object"]["key"])
        return fixture_rows(f"s3://{s3['bucket']['name']}/{key}"), DEFAULT_TARGETS
    detail = event["detail"]
    if event["source"] == "aws.s3":
        return fixture_rows(f"s3://{detail['bucket']['name']}/{detail['object']['key']}"), DEFAULT_TARGETS
    return detail["rows"], detail.get("targets", DEFAULT_TARGETS)


def expected(event_name, event):
    """(column names, Spark types, NOT NULL columns, rows) the readers must report."""
    if event_name in DECLARED:
        declared = DECLARED[event_name]
        return list(declared["rows"][0]), declared["types"], declared["not_null"], declared["rows"]
    rows, _ = rows_and_targets(event)
    names = list(dict.fromkeys(k for row in rows for k in row))
    types = {n: arrow_type([row.get(n) for row in rows]) for n in names}
    want = [{n: filled(row.get(n), types[n]) for n in names} for row in rows]
    return names, [spark_of_arrow(types[n]) for n in names], [], want


# --- each reader's types, as Spark's simpleString ------------------------------------------

def spark_of_arrow(t):
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{spark_of_arrow(f.type)}" for f in t) + ">"
    if pa.types.is_map(t):
        return f"map<{spark_of_arrow(t.key_type)},{spark_of_arrow(t.item_type)}>"
    if pa.types.is_list(t):
        return f"array<{spark_of_arrow(t.value_type)}>"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        assert t.unit == "us" and t.tz in ("+00:00", "UTC"), t
        return "timestamp"
    return {pa.string(): "string", pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int",
            pa.int64(): "bigint", pa.float32(): "float", pa.float64(): "double", pa.bool_(): "boolean",
            pa.binary(): "binary", pa.date32(): "date"}[t]


def spark_of_duckdb(t):
    if t.id == "struct":
        return "struct<" + ",".join(f"{n}:{spark_of_duckdb(c)}" for n, c in t.children) + ">"
    if t.id == "list":
        return f"array<{spark_of_duckdb(t.children[0][1])}>"
    if t.id == "map":
        (_, key), (_, value) = t.children
        return f"map<{spark_of_duckdb(key)},{spark_of_duckdb(value)}>"
    if t.id == "decimal":
        (_, precision), (_, scale) = t.children
        return f"decimal({precision},{scale})"
    return {"varchar": "string", "tinyint": "tinyint", "smallint": "smallint", "integer": "int",
            "bigint": "bigint", "float": "float", "double": "double", "boolean": "boolean",
            "blob": "binary", "date": "date", "timestamp with time zone": "timestamp"}[t.id]


def spark_of_polars(t):
    if isinstance(t, pl.Struct):
        return "struct<" + ",".join(f"{f.name}:{spark_of_polars(f.dtype)}" for f in t.fields) + ">"
    if isinstance(t, pl.Map):
        return f"map<{spark_of_polars(t.key)},{spark_of_polars(t.value)}>"
    if isinstance(t, pl.List):
        return f"array<{spark_of_polars(t.inner)}>"
    if isinstance(t, pl.Decimal):
        return f"decimal({t.precision},{t.scale})"
    if isinstance(t, pl.Datetime):
        assert t.time_unit == "us" and t.time_zone == "UTC", t
        return "timestamp"
    for dtype, name in [(pl.String, "string"), (pl.Int8, "tinyint"), (pl.Int16, "smallint"),
                        (pl.Int32, "int"), (pl.Int64, "bigint"), (pl.Float32, "float"),
                        (pl.Float64, "double"), (pl.Boolean, "boolean"), (pl.Binary, "binary"),
                        (pl.Date, "date")]:
        if t == dtype:
            return name
    raise AssertionError(f"unexpected polars type {t}")


def canon(value):
    """One representation for every reader's Python values."""
    if hasattr(value, "asDict"):  # a PySpark Row
        value = value.asDict(recursive=False)
    if isinstance(value, datetime.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # Spark: session time zone UTC
        return aware.astimezone(UTC).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    return value


# --- the run: every event invoked once, its objects downloaded -----------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    results = {}
    for event_path in EVENTS:
        work = tmp_path_factory.mktemp(event_path.stem)
        done, response = invoke(event_path, work / "out.json")
        files = []
        if done.returncode == 0 and response and not response.get("dry_run"):
            files = [(obj, download(obj["uri"], work)) for obj in response.get("objects", [])]
        results[event_path.stem] = (event_path, done, response, files)
    return results


def stack_config():
    """The function's configuration as scripts/stack.sh gives the local loop (the samples
    expect it)."""
    return {name: os.environ[f"STACK_{name}"] for name in ("DEFAULT_TARGETS", "ALLOWED_PREFIXES", "ALLOWED_SOURCES")}


def sample_expectation(name):
    """What `events/<name>.expect.json` says of the sample (nothing: it converts)."""
    path = ROOT / "events" / f"{name}.expect.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.parametrize("name", [p.stem for p in EVENTS])
def test_invocation(runs, name):
    event_path, done, response, files = runs[name]
    event = json.loads(event_path.read_text())
    expect = sample_expectation(name)
    if "reply" in expect:
        # An SQS batch (only the failed messages come back) or a test event (nothing to do).
        assert done.returncode == 0, done.stderr
        assert holds(response, expect["reply"]), response
        return
    if expect:
        # cargo lambda watch answers a function error with HTTP 500, which the CLI reports as
        # a failed call (on AWS: exit 0, "FunctionError": "Unhandled" and the document in
        # out.json); the document itself is read over plain HTTP.
        assert done.returncode != 0 and "(500)" in done.stderr, (done.returncode, done.stderr)
        _, error = invoke_raw(event_path)
        assert error["errorType"] == expect["errorType"], error
        assert expect["messageContains"] in error["errorMessage"], error
        return
    assert done.returncode == 0, done.stderr
    assert "FunctionError" not in json.loads(done.stdout), response
    check_written(event, response, files)


def check_written(event, response, files):
    """A valid event's response and the objects it names (downloaded as `files`): one per
    target, in its folder, with the target's codec in every column chunk."""
    rows, targets = rows_and_targets(event)
    assert response["rows"] == len(rows)
    reads_an_object = "rows" not in event and ("detail" not in event or event["source"] == "aws.s3")
    if reads_an_object:
        assert response["source"]["uri"].startswith("s3://in-bucket/in/"), response
    assert [o["compression"] for o in response["objects"]] == [t["compression"].lower() for t in targets]
    for obj, target in zip(response["objects"], targets):
        assert obj["uri"].startswith(target["prefix"].rstrip("/") + "/"), obj
    if event.get("dry_run"):
        assert response["schema"]["ddl"] == event["schema"]
        assert all(o["etag"] is None and "LOCATION 's3://" in o["athena_ddl"] for o in response["objects"])
        return
    for obj, path in files:
        assert path.stat().st_size == obj["bytes"]
        assert obj["etag"] and obj["checksum_crc32c"], obj
        meta = pq.ParquetFile(path).metadata
        codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
        assert codecs == {PARQUET_CODEC[obj["compression"]]}, codecs
        assert meta.created_by.startswith("rows-to-parquet version "), meta.created_by


def read_pyarrow(path, spark):
    table = pq.read_table(path)
    return ([f.name for f in table.schema], [spark_of_arrow(f.type) for f in table.schema],
            [f.name for f in table.schema if not f.nullable], table.to_pylist(maps_as_pydicts="strict"))


def read_duckdb(path, spark):
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{path}')")
    rows = [dict(zip(relation.columns, row)) for row in relation.fetchall()]
    return relation.columns, [spark_of_duckdb(t) for t in relation.types], None, rows


def read_polars(path, spark):
    frame = pl.read_parquet(path)
    return frame.columns, [spark_of_polars(t) for t in frame.dtypes], None, frame.to_dicts()


def read_spark(path, spark):
    frame = spark.read.parquet(str(path))
    fields = frame.schema.fields
    # Spark reports every column of a file source as nullable, whatever the file says.
    return [f.name for f in fields], [f.dataType.simpleString() for f in fields], None, frame.collect()


# What a reader cannot read, and the error that says why (docs/event.md's compatibility table):
# Spark's distribution (and so Glue's) ships no Brotli codec for Parquet.
UNREADABLE = {("pyspark", "brotli"): "BrotliCodec"}
READERS = {"pyarrow": read_pyarrow, "duckdb": read_duckdb, "polars": read_polars, "pyspark": read_spark}
WRITTEN = [p.stem for p in EVENTS
           if not p.with_name(p.stem + ".expect.json").exists() and not json.loads(p.read_text()).get("dry_run")]
# Events of the function's own (rows or a source object): the ones a dry run can be asked of.
OWN = [name for name in WRITTEN
       if {"rows", "source"} & set(json.loads((ROOT / "events" / f"{name}.json").read_text()))
       and not isinstance(json.loads((ROOT / "events" / f"{name}.json").read_text()).get("source"), str)]


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("name", WRITTEN)
def test_reader_gets_back_the_types_and_values_asked_for(runs, spark, name, reader):
    event_path, done, response, files = runs[name]
    assert files, f"{name} wrote nothing: {done.stderr} {response}"
    names, types, not_null, rows = expected(name, json.loads(event_path.read_text()))
    for obj, path in files:
        if (reader, obj["compression"]) in UNREADABLE:
            with pytest.raises(Exception, match=UNREADABLE[reader, obj["compression"]]):
                READERS[reader](path, spark)
            continue
        got_names, got_types, got_not_null, got_rows = READERS[reader](path, spark)
        assert list(got_names) == names, obj["uri"]
        assert got_types == types, obj["uri"]
        if got_not_null is not None:
            assert got_not_null == not_null, obj["uri"]
        assert canon(got_rows) == canon(rows), obj["uri"]


def test_every_sample_event_was_collected():
    assert len(EVENTS) >= 24 and len(WRITTEN) >= 12 and len(OWN) >= 10, [p.name for p in EVENTS]


@pytest.mark.parametrize("name", OWN)
def test_athena_ddl_of_a_dry_run_reads_what_was_written(runs, spark, name, tmp_path):
    """The same event as a dry run returns a CREATE EXTERNAL TABLE per target; Spark's Hive
    DDL parser accepts it, and a table made from it over the object written earlier reads
    back the asked-for types and values."""
    event_path, done, response, files = runs[name]
    event = json.loads(event_path.read_text())
    dry_path = tmp_path / "dry.json"
    dry_path.write_text(json.dumps({**event, "dry_run": True}))
    dry_done, dry = invoke(dry_path, tmp_path / "dry-out.json")
    assert dry_done.returncode == 0, dry_done.stderr
    names, types, _, rows = expected(name, event)
    for i, ((obj, path), described) in enumerate(zip(files, dry["objects"])):
        assert described["bytes"] == obj["bytes"], "the dry run and the run build the same bytes"
        if ("pyspark", obj["compression"]) in UNREADABLE:
            continue
        prefix = obj["uri"].rsplit("/", 1)[0] + "/"
        ddl = described["athena_ddl"]
        assert ddl.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS `") and f"LOCATION '{prefix}'" in ddl, ddl
        folder = tmp_path / f"table{i}"
        folder.mkdir()
        (folder / path.name).write_bytes(path.read_bytes())
        table = f"{name.replace('-', '_')}_{i}"
        local = ddl.replace(f"LOCATION '{prefix}'", f"LOCATION '{folder.as_uri()}/'")
        local = f"CREATE EXTERNAL TABLE `{table}`" + local[local.index(" (\n"):]
        spark.sql(local)
        frame = spark.table(table)
        assert [f.name for f in frame.schema.fields] == [n.lower() for n in names]
        assert [f.dataType.simpleString() for f in frame.schema.fields] == types
        assert canon(frame.collect()) == canon(rows)



# --- partition_by: Hive folders as Spark writes and reads them -------------------------------

def download_folder(response, prefix, directory):
    """Every object of `response`, into `directory` under the folders below `prefix`."""
    for obj in response["objects"]:
        local = directory / obj["uri"][len(prefix):]
        local.parent.mkdir(parents=True, exist_ok=True)
        aws("s3", "cp", "--endpoint-url", os.environ["S3_ENDPOINT"], obj["uri"], str(local))
    return directory


def invoke_event(event, tmp_path, name):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(event))
    done, response = invoke(path, tmp_path / f"{name}-out.json")
    assert done.returncode == 0, done.stderr
    return response


# Values whose folder names need escaping, each with its row number.
TRICKY = ["a/b", "x=y", "50%", "why?", "#1", "c:d", "st*r", "it's", 'say "hi"', "[a]{b}^c", "back\\slash",
          "tab\tctl\u0001", "del\u007f", "é 🚀 ü", "plain", "", None]


def test_partition_folders_are_escaped_as_spark_escapes_them_and_read_back_unescaped(spark, tmp_path):
    escape = spark._jvm.org.apache.spark.sql.catalyst.catalog.ExternalCatalogUtils.escapePathName
    prefix = "s3://my-bucket/out/e2e-escaped/"
    event = {"rows": [{"n": i, "v": v} for i, v in enumerate(TRICKY)], "partition_by": ["v"],
             "targets": [{"prefix": prefix, "compression": "snappy"}]}
    response = invoke_event(event, tmp_path, "escaped")
    assert len(response["objects"]) == len(TRICKY) - 1  # "" and null share the default folder
    for obj in response["objects"]:
        local = download(obj["uri"], tmp_path)
        ns = pq.read_table(local).column("n").to_pylist()
        values = {TRICKY[n] for n in ns}
        want = {"v=__HIVE_DEFAULT_PARTITION__"} if values <= {"", None} else {f"v={escape(v)}" for v in values}
        assert {obj["partition"]} == want, (obj["partition"], values)
    folder = download_folder(response, prefix, tmp_path / "escaped")
    back = {row["n"]: row["v"] for row in spark.read.parquet(str(folder)).collect()}
    assert back == {i: (v or None) for i, v in enumerate(TRICKY)}


def partitioned_people(tmp_path, prefix, **extra):
    event = json.loads((ROOT / "events" / "partitioned-rows.json").read_text())
    event = {**event, "targets": [{"prefix": prefix, "compression": "snappy"}], **extra}
    return event, invoke_event(event, tmp_path, prefix.rstrip("/").rsplit("/", 1)[1] + str(len(extra)))


def test_spark_and_duckdb_discover_the_partitions_with_the_types_they_infer(spark, tmp_path):
    prefix = "s3://my-bucket/out/e2e-people/"
    event, response = partitioned_people(tmp_path, prefix)
    assert response["rows"] == 4 and len(response["objects"]) == 4
    folder = download_folder(response, prefix, tmp_path / "people")
    want = event["rows"]
    frame = spark.read.parquet(str(folder))
    assert [(f.name, f.dataType.simpleString()) for f in frame.schema.fields] == [
        ("name", "string"), ("age", "bigint"), ("dt", "date"), ("region", "string")]
    key = lambda r: r["name"]
    assert sorted(canon(frame.collect()), key=key) == sorted(want, key=key)
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{folder}/**/*.parquet', hive_partitioning=true)")
    assert [str(t) for t in relation.types] == ["VARCHAR", "BIGINT", "DATE", "VARCHAR"], relation.types
    got = [canon(dict(zip(relation.columns, row))) for row in relation.fetchall()]
    assert sorted(got, key=key) == sorted(want, key=key)


def test_athena_ddl_of_a_partitioned_dry_run_reads_every_partition_after_msck_repair(spark, tmp_path):
    prefix = "s3://my-bucket/out/e2e-people-ddl/"
    event, response = partitioned_people(tmp_path, prefix)
    _, dry = partitioned_people(tmp_path, prefix, dry_run=True)
    ddl = dry["objects"][0]["athena_ddl"]
    assert "PARTITIONED BY (\n  dt string,\n  region string\n)" in ddl, ddl
    assert [o.get("athena_ddl") is not None for o in dry["objects"]] == [True, False, False, False]
    folder = download_folder(response, prefix, tmp_path / "people-ddl")
    local = ddl.replace(f"LOCATION '{prefix}'", f"LOCATION '{folder.as_uri()}/'")
    local = "CREATE EXTERNAL TABLE `people_partitioned`" + local[local.index(" (\n"):]
    spark.sql(local)
    spark.sql("MSCK REPAIR TABLE people_partitioned")
    rows = canon(spark.table("people_partitioned").collect())
    key = lambda r: r["name"]
    assert sorted(rows, key=key) == sorted(event["rows"], key=key)
