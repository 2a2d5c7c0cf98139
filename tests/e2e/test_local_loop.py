"""End to end: every sample event in events/ is sent with the AWS CLI v2 (`aws lambda invoke`)
to the built function running under `cargo lambda watch`, which writes to the embedded S3
server. Every object written is read back with pyarrow and with DuckDB and compared with the
event's rows: values, types, and the codec its target asked for. Invalid events must come back
as function errors with the errorType their `.expect.json` names.

Run by scripts/test, which starts the local loop and sets S3_ENDPOINT, INVOKE_ENDPOINT and
FUNCTION_NAME."""
import json
import os
import pathlib
import subprocess
import urllib.error
import urllib.request

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EVENTS = sorted(p for p in (ROOT / "events").glob("*.json") if not p.name.endswith(".expect.json"))
DEFAULT_TARGETS = [
    {"prefix": "s3://my-bucket/out/parquet/", "compression": "uncompressed"},
    {"prefix": "s3://my-bucket/out/parquet-snappy/", "compression": "snappy"},
]
# What each event codec is called in Parquet's footer, as pyarrow reports it (pyarrow names
# Parquet's LZ4_RAW "LZ4", and the deprecated Hadoop-framed one "LZ4_HADOOP").
PARQUET_CODEC = {"uncompressed": "UNCOMPRESSED", "snappy": "SNAPPY", "zstd": "ZSTD",
                 "gzip": "GZIP", "lz4": "LZ4", "brotli": "BROTLI"}


def aws(*args, check=True):
    # One attempt: a function error must not be retried into three invocations.
    env = {**os.environ, "AWS_MAX_ATTEMPTS": "1"}
    return subprocess.run(["aws", *args], capture_output=True, text=True, check=check, env=env)


def invoke(event_path, out_path):
    """`aws lambda invoke` exactly as against AWS, plus the local endpoint. Returns the CLI's
    exit code, its output, and the function's response."""
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
    local = directory / uri.rsplit("/", 1)[1]
    aws("s3", "cp", "--endpoint-url", os.environ["S3_ENDPOINT"], uri, str(local))
    return local


def arrow_type(values):
    """The Arrow type the README's type rules give a column holding `values`."""
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
        return pa.list_(pa.field("element", arrow_type([x for v in present for x in v])))
    raise AssertionError(f"mixed column in a valid sample event: {[type(v) for v in present]}")


def duckdb_type(typ):
    """The DuckDB SQL type a reader of our Parquet should see for an Arrow type."""
    if pa.types.is_struct(typ):
        return "STRUCT(" + ", ".join(f"{f.name} {duckdb_type(f.type)}" for f in typ) + ")"
    if pa.types.is_list(typ):
        return duckdb_type(typ.value_type) + "[]"
    return {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR",
            pa.bool_(): "BOOLEAN"}[typ]


def expected_schema(rows):
    names = list(dict.fromkeys(k for row in rows for k in row))
    return pa.schema([(n, arrow_type([row.get(n) for row in rows])) for n in names])


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


def expected_rows(rows, schema):
    return [{f.name: filled(row.get(f.name), f.type) for f in schema} for row in rows]


@pytest.mark.parametrize("event_path", EVENTS, ids=[p.stem for p in EVENTS])
def test_sample_event(event_path, tmp_path):
    event = json.loads(event_path.read_text())
    done, response = invoke(event_path, tmp_path / "out.json")
    expect_path = event_path.with_name(event_path.stem + ".expect.json")
    if expect_path.exists():
        expect = json.loads(expect_path.read_text())
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
    targets = event.get("targets", DEFAULT_TARGETS)
    assert response["rows"] == len(event["rows"])
    assert [o["compression"] for o in response["objects"]] == [t["compression"].lower() for t in targets]
    schema = expected_schema(event["rows"])
    want = expected_rows(event["rows"], schema)
    for obj, target in zip(response["objects"], targets):
        assert obj["uri"].startswith(target["prefix"].rstrip("/") + "/"), obj
        path = download(obj["uri"], tmp_path)
        assert path.stat().st_size == obj["bytes"]

        # pyarrow: types, values, codec
        parquet = pq.ParquetFile(path)
        table = parquet.read()
        assert table.schema.remove_metadata() == schema, (table.schema, schema)
        assert table.to_pylist() == want
        meta = parquet.metadata
        codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
        assert codecs == {PARQUET_CODEC[obj["compression"]]}, codecs

        # DuckDB: the same values, and SQL types that follow from the Arrow ones
        relation = duckdb.sql(f"SELECT * FROM read_parquet('{path}')")
        assert relation.columns == schema.names
        assert relation.fetchall() == [tuple(row.values()) for row in want]
        # (DuckDB quotes field names that are SQL keywords; compare without quotes)
        assert [str(t).replace('"', "") for t in relation.types] == [duckdb_type(f.type) for f in schema]


def test_every_sample_event_was_collected():
    assert len(EVENTS) >= 9, [p.name for p in EVENTS]
