"""CSV and TSV sources through the built `bootstrap` (under the Runtime API emulator, reading
from and writing to the embedded S3 server), read back with pyarrow, and the same CSV read by
PySpark with `inferSchema`:

- events/source-csv.json (a UTF-8 BOM, CRLF, quoted delimiters, doubled quotes, a quoted line
  break, nulls): Spark's schema and values, but for the one documented difference (a quoted
  CRLF is kept, where Spark's reader makes it LF);
- Spark's inferSchema rules over a file of edge cases: the same types as Spark gives;
- a gzip'd CSV through an S3 notification, with CSV_OPTIONS; a `.tsv` object; an
  extension-less key read by DEFAULT_SOURCE_FORMAT; a map batch with `BatchInput.csv`;
- options (delimiter, quote, escape, comment, null value) with a declared schema, and
  header-less objects with and without one; PERMISSIVE;
- every bad object refused with its line named, nothing written and no upload left;
- a 300 MB CSV object converted under 128 MiB of peak RSS;
- CSV into an Iceberg table (moto's Glue and S3), read back by pyiceberg and DuckDB.

Run by scripts/test after the debug binaries are built; CARGO_TARGET_DIR comes from
scripts/env.sh."""
import datetime
import decimal
import gzip
import json
import pathlib
import sys

import pyarrow.parquet as pq
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from helpers import Function, function as table_function, invoke as table_invoke, s3  # noqa: E402,F401
from iceberg_readers import duckdb_scan, pyiceberg_scan  # noqa: E402
from local_catalog import Moto, environment  # noqa: E402

UTC = datetime.timezone.utc
OUT = [{"prefix": "s3://my-bucket/csv/out/", "compression": "snappy"}]
PEOPLE = ROOT / "events" / "objects" / "in-bucket" / "in" / "partners" / "people.csv"


def source(key, **fields):
    return {"source": {"uri": f"s3://in-bucket/{key}", **fields}, "targets": OUT}


def types(schema):
    return {f.name: str(f.type) for f in schema}


def spark_csv(spark, path, **options):
    reader = spark.read.option("header", True).option("inferSchema", True).option("escape", '"').option("multiLine", True)
    for name, value in options.items():
        reader = reader.option(name, value)
    return reader.csv(str(path))


def test_the_sample_reads_as_spark_reads_it(s3, spark, tmp_path):
    with Function(s3) as f:
        schema, rows, body = f.rows(json.loads((ROOT / "events" / "source-csv.json").read_text()))
    assert body["rows"] == 3 and body["source"]["uri"].endswith("people.csv")
    assert types(schema) == {"id": "int32", "name": "string", "amount": "double", "joined": "date32[day]",
                             "last_seen": "timestamp[us, tz=+00:00]", "active": "bool", "note": "string",
                             "visits": "int64"}
    ours = spark.read.parquet(str(s3.root / body["objects"][0]["bucket"] / body["objects"][0]["key"]))
    theirs = spark_csv(spark, PEOPLE)
    assert ours.schema.simpleString() == theirs.schema.simpleString()
    mine = [r.asDict() for r in ours.collect()]
    spark_rows = [r.asDict() for r in theirs.collect()]
    # The one difference: Spark's reader turns a quoted CRLF into LF; the bytes are kept here.
    assert mine[1]["note"] == "two\r\nlines" and spark_rows[1]["note"] == "two\nlines"
    mine[1]["note"] = spark_rows[1]["note"]
    assert mine == spark_rows
    assert rows[0]["name"] == "Doe, John" and rows[0]["note"] == 'said "hi"'


EDGES = """int,long,dec,dbl,num_mix,date,ts,padded,minutes,bool,nulls,mixed,text_num,big_mix
1,3000000000,92233720368547758080,1.5,1,2024-05-01,2024-05-01T10:00:00Z,2024-1-5,2024-05-01T10:00,true,,1,007,9223372036854775808
-2147483648,-1,1,NaN,2.5,1999-12-31,2024-05-01 10:00:00,2024-01-05,2024-05-01 10:30,FALSE,,x,+12,1
+7,2,123,-Infinity,3e2,2000-02-29,2024-05-01T10:00:00.123456+02:00,2024-02-05,2024-05-02T10:00,True,,,,2.5
"""


def test_types_are_inferred_as_spark_infers_them(s3, spark, tmp_path):
    path = tmp_path / "edges.csv"
    path.write_text(EDGES)
    with Function(s3) as f:
        f.put("csv/edges.csv", EDGES.encode())
        _, _, body = f.rows(source("csv/edges.csv"))
    ours = spark.read.parquet(str(s3.root / body["objects"][0]["bucket"] / body["objects"][0]["key"]))
    theirs = spark_csv(spark, path)
    assert ours.schema.simpleString() == theirs.schema.simpleString(), (ours.schema, theirs.schema)
    # NaN is no value's equal: compared as text.
    same = lambda frame: [{k: "NaN" if v != v else v for k, v in r.asDict().items()} for r in frame.collect()]
    assert same(ours) == same(theirs)


def test_gzip_through_a_notification_tsv_and_a_default_format(s3):
    people = PEOPLE.read_bytes()
    semicolons = people.replace(b",", b";").replace(b'"Doe; John"', b'"Doe, John"')
    with Function(s3, DEFAULT_TARGETS=json.dumps(OUT), CSV_OPTIONS='{"delimiter": ";"}',
                  DEFAULT_SOURCE_FORMAT="csv") as f:
        f.put("csv/notified/people.csv.gz", gzip.compress(semicolons))
        notification = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                     "s3": {"bucket": {"name": "in-bucket"},
                                            "object": {"key": "csv/notified/people.csv.gz", "size": 1}}}]}
        _, rows, _ = f.rows(notification)
        assert [r["name"] for r in rows] == ["Doe, John", "Jane Smith", "Mike Johnson"]
        assert rows[0]["visits"] == 3000000000
        # No extension: DEFAULT_SOURCE_FORMAT (and CSV_OPTIONS) decide.
        f.put("csv/export-2024", semicolons)
        _, rows, _ = f.rows(source("csv/export-2024"))
        assert len(rows) == 3 and rows[2]["joined"] == datetime.date(2024, 1, 15)
    with Function(s3) as f:
        f.put("csv/people.tsv", b"id\tname\tnote\n1\tJohn, Doe\t\"a\tb\"\n")
        schema, rows, _ = f.rows(source("csv/people.tsv"))
        assert rows == [{"id": 1, "name": "John, Doe", "note": "a\tb"}]
        # An event's own `csv` overrides: the tab only decides where no delimiter is set.
        f.put("csv/commas.tsv", b"a,b\n1,2\n")
        _, rows, _ = f.rows(source("csv/commas.tsv", csv={"delimiter": ","}))
        assert rows == [{"a": 1, "b": 2}]


def test_a_map_batch_of_csv_objects_with_its_options(s3):
    with Function(s3) as f:
        f.put("csv/batch/a.txt", b"id;city\n1;Paris\n")
        f.put("csv/batch/b.txt", b"id;city\n2;Lyon\n3;\n")
        items = [{"Key": f"csv/batch/{n}.txt", "Etag": f'"{n}"', "Size": 1} for n in "ab"]
        batch = {"Items": items, "BatchInput": {"bucket": "in-bucket", "format": "csv",
                                                 "csv": {"delimiter": ";"}, "targets": OUT}}
        kind, body = f.invoke(batch)
        assert kind == "response", body
        [result] = body["results"]
        obj = result["objects"][0]
        rows = pq.read_table(s3.root / obj["bucket"] / obj["key"]).to_pylist()
        assert rows == [{"id": 1, "city": "Paris"}, {"id": 2, "city": "Lyon"}, {"id": 3, "city": None}]
        batch["BatchInput"]["csv"] = {"delimiter": ";", "quote": "ab"}
        kind, body = f.invoke(batch)
        assert kind == "error" and "`BatchInput.csv`: `quote` must be one ASCII character" in body["errorMessage"], body


def test_options_a_declared_schema_and_header_less_objects(s3):
    text = b"# exported by partner X\nid|price|day|label\n1|'12.50'|2024-05-01|'it\\'s'\n2|NA|2024-05-02|NA\n"
    options = {"delimiter": "|", "quote": "'", "escape": "\\", "comment": "#", "null_value": "NA"}
    with Function(s3) as f:
        f.put("csv/typed.csv", text)
        event = source("csv/typed.csv", csv=options)
        event["schema"] = "id BIGINT NOT NULL, price DECIMAL(10,2), day DATE, label STRING"
        schema, rows, _ = f.rows(event)
        assert types(schema) == {"id": "int64", "price": "decimal128(10, 2)", "day": "date32[day]", "label": "string"}
        assert rows == [{"id": 1, "price": decimal.Decimal("12.50"), "day": datetime.date(2024, 5, 1), "label": "it's"},
                        {"id": 2, "price": None, "day": datetime.date(2024, 5, 2), "label": None}]
        # A value that does not fit the declared type: the column and the line, not the value.
        f.put("csv/unfit.csv", b"id,price\n1,2.5\n2,12.345\n")
        event = source("csv/unfit.csv")
        event["schema"] = "id INT, price DECIMAL(10,2)"
        kind, body = f.invoke(event)
        assert kind == "error" and body["errorType"] == "InvalidEvent", body
        assert "column `price` at line 3" in body["errorMessage"] and "12.345" not in body["errorMessage"], body
        # A header column the schema lacks: refused, or dropped with `unknown_keys`.
        f.put("csv/extra.csv", b"id,secret_col\n1,x\n")
        event = source("csv/extra.csv")
        event["schema"] = "id INT"
        kind, body = f.invoke(event)
        assert kind == "error" and "secret_col" in body["errorMessage"] and "line 2" in body["errorMessage"], body
        event["unknown_keys"] = "drop"
        _, rows, _ = f.rows(event)
        assert rows == [{"id": 1}]
        # Header-less: `_c0`, … as Spark names them, or the declared schema's names in order.
        f.put("csv/bare.csv", b"1,John\n2,Jane\n")
        _, rows, _ = f.rows(source("csv/bare.csv", csv={"header": False}))
        assert rows == [{"_c0": 1, "_c1": "John"}, {"_c0": 2, "_c1": "Jane"}]
        event = source("csv/bare.csv", csv={"header": False})
        event["schema"] = "id BIGINT, name STRING"
        _, rows, _ = f.rows(event)
        assert rows == [{"id": 1, "name": "John"}, {"id": 2, "name": "Jane"}]
        # PERMISSIVE: missing fields null, extra ones dropped.
        f.put("csv/ragged.csv", b"a,b\n1\n2,3,4\n")
        _, rows, _ = f.rows(source("csv/ragged.csv", csv={"mode": "PERMISSIVE"}))
        assert rows == [{"a": 1, "b": None}, {"a": 2, "b": 3}]


BAD = [
    ("short.csv", b"a,b\n1,2\n3\n", "line 3: 1 field where there are 2 columns"),
    ("long.csv", b"a,b\n1,2\n3,4,5\n", "line 3: 3 fields where there are 2 columns"),
    ("open-quote.csv", b"a,b\n1,2\n3,\"secret\n4,5\n", "line 3: a quoted field never closes"),
    ("after-quote.csv", b"a,b\n1,\"secret\"x\n", "line 2: a quoted field has characters after its closing quote"),
    ("latin1.csv", b"a,b\n1,2\n3,caf\xe9\n", "invalid UTF-8 at line 3"),
    ("header-only.csv", b"a,b\r\n", "holds no rows"),
]


@pytest.mark.parametrize("name,body,word", BAD, ids=[b[0] for b in BAD])
def test_bad_objects_name_the_line_and_write_nothing(s3, name, body, word):
    with Function(s3) as f:
        # Enough good rows before the bad one for several chunks: the first ones were uploaded.
        if name in ("short.csv", "long.csv"):
            body = body.replace(b"1,2\n", b"".join(b"%d,2\n" % i for i in range(400_000)))
            word = word.replace("line 3", "line 400002")
        f.put(f"csv/bad/{name}", body)
        before = s3.objects("my-bucket")
        kind, answer = f.invoke(source(f"csv/bad/{name}"))
        assert kind == "error" and answer["errorType"] == "InvalidEvent", answer
        assert word in answer["errorMessage"] and f"csv/bad/{name}" in answer["errorMessage"], answer
        assert "secret" not in answer["errorMessage"] and "caf" not in answer["errorMessage"]
        assert s3.objects("my-bucket") == before
        assert not s3.uploads()


def test_a_300_mb_csv_streams_under_128_mib(s3):
    rows = 3_600_000
    line = b'%d,customer-%09d,%d,"Chicago, IL",%d.25,%s,2024-05-%02d,"call back\nlater"\n'
    with Function(s3) as f:
        path = f.s3.root / "in-bucket" / "csv" / "big.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            out.write(b"id,name,age,city,score,active,day,note\n")
            for start in range(0, rows, 100_000):
                out.write(b"".join(line % (i, i, 18 + i % 70, i % 1000, b"true" if i % 3 else b"false", 1 + i % 28)
                                   for i in range(start, start + 100_000)))
        size = path.stat().st_size
        assert size > 300 * 10**6, size
        kind, body = f.invoke(source("csv/big.csv"))
        peak_mib = f.emulator.peak_rss_kib() / 1024
    assert kind == "response" and body["rows"] == rows, body
    assert peak_mib < 128, f"peak RSS {peak_mib:.0f} MiB for a {size / 1e6:.0f} MB CSV"
    obj = body["objects"][0]
    file = pq.ParquetFile(s3.root / obj["bucket"] / obj["key"])
    assert file.metadata.num_rows == rows and file.metadata.num_row_groups > 1
    last = file.read_row_group(file.metadata.num_row_groups - 1).to_pylist()[-1]
    assert last["id"] == rows - 1 and last["note"] == "call back\nlater" and last["city"] == "Chicago, IL"
    path.unlink()


@pytest.fixture(scope="module")
def moto():
    with environment():
        server = Moto(buckets=["lake"], databases=["partners"])
        yield server
        server.stop()


def test_csv_into_an_iceberg_table(moto):
    s3 = moto.client("s3")
    s3.put_object(Bucket="lake", Key="in/people.csv", Body=PEOPLE.read_bytes())
    s3.put_object(Bucket="lake", Key="in/more.csv", Body=b"4,Ann Lee,1.5,2024-06-01,,false,,6\n")
    emulator = table_function(moto, TABLE_WAREHOUSE="s3://lake/warehouse/", ALLOWED_TABLES="partners.*")
    try:
        # A table is created from a source object's declared schema (its rows are not read twice).
        event = {"source": {"uri": "s3://lake/in/people.csv"}, "targets": [{"table": "partners.people"}],
                 "schema": "id INT, name STRING, amount DOUBLE, joined DATE, last_seen TIMESTAMP, "
                           "active BOOLEAN, note STRING, visits BIGINT"}
        kind, reply = table_invoke(emulator, event)
        assert kind == "response" and reply["tables"][0]["rows"] == 3, reply
        # A header-less object takes the table's columns, in order.
        event = {"source": {"uri": "s3://lake/in/more.csv", "csv": {"header": False}},
                 "targets": [{"table": "partners.people"}]}
        kind, reply = table_invoke(emulator, event)
        assert kind == "response" and reply["tables"][0]["rows"] == 1, reply
    finally:
        emulator.stop()
    table = moto.catalog().load_table("partners.people")
    assert [(f.name, str(f.field_type)) for f in table.schema().fields] == [
        ("id", "int"), ("name", "string"), ("amount", "double"), ("joined", "date"),
        ("last_seen", "timestamptz"), ("active", "boolean"), ("note", "string"), ("visits", "long")]
    rows = sorted(pyiceberg_scan(moto, "partners.people")[0].to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["name"] == "Doe, John" and rows[0]["visits"] == 3000000000
    assert rows[3]["amount"] == 1.5 and rows[3]["joined"] == datetime.date(2024, 6, 1)
    # DuckDB: rows as lists, dates as text.
    rows = sorted(duckdb_scan(moto, table.metadata_location, columns="id, name, amount, joined")[0])
    assert rows == [[1, "Doe, John", 19.99, "2024-05-01"], [2, "Jane Smith", 5.0, "2023-12-31"],
                                     [3, "Mike Johnson", None, "2024-01-15"], [4, "Ann Lee", 1.5, "2024-06-01"]]
