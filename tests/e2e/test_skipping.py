"""Files that readers skip through, written by the built `bootstrap` (under the Runtime API
emulator, with the embedded S3 server) and read back by pyarrow and DuckDB:

- every file, uncompressed and Snappy, inline rows and a streamed source, carries the page
  index (pyarrow's `has_offset_index` on every chunk, `has_column_index` on every chunk whose
  pages' bounds differ; the bounds are checked in src/encode/writer.rs's unit tests) and no
  bloom filter unless asked;
- `bloom_filter_columns` (event) and BLOOM_FILTER_COLUMNS (configuration): DuckDB's
  `parquet_metadata` shows a filter on exactly those columns, and `parquet_bloom_probe`
  finds every value written and rules out nearly every value that was not;
- `sort_by` (event) and SORT_BY (configuration): inline rows sorted whole, a streamed
  source's rows sorted within each row group, every row kept;
- a bad option or a column the rows lack: `InvalidEvent` naming it, nothing written;
- `row_group_bytes`: a streamed source's row groups close at about that many encoded bytes
  (by default at a sixteenth of the function's memory, 8 MiB at 128 MB, rather than at a row
  count); more than the function's memory allows is refused, nothing written.

Run by scripts/test after the debug binaries are built."""
import datetime
import json
import os
import pathlib
import subprocess
import sys

import duckdb
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from helpers import BOOTSTRAP, Function, s3  # noqa: E402,F401

OUT = [{"prefix": "s3://my-bucket/skip/raw/", "compression": "uncompressed"},
       {"prefix": "s3://my-bucket/skip/snappy/", "compression": "snappy"}]


def rows(n, first=0):
    """`n` rows in a scrambled order: a unique `id`, a timestamp, a few cities."""
    out = []
    for i in range(first, first + n):
        key = (i * 7919) % 1_000_003
        ts = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=key)
        out.append({"id": key, "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "city": ["Paris", "Lyon", "Nice"][i % 3], "amount": i * 0.5})
    return out


def files(s3, reply):
    return [s3.root / o["bucket"] / o["key"] for o in reply["objects"]]


def bloom_columns(path):
    """The columns of `path` whose chunks carry a bloom filter, by DuckDB's reading."""
    found = duckdb.sql(f"SELECT DISTINCT path_in_schema FROM parquet_metadata('{path}') "
                       "WHERE bloom_filter_offset IS NOT NULL AND bloom_filter_length > 0").fetchall()
    return sorted(p for (p,) in found)


def probe(path, column, value):
    """Whether DuckDB's bloom probe says `value` may be in `column` of some row group."""
    excluded = duckdb.sql(f"SELECT bloom_filter_excludes FROM parquet_bloom_probe('{path}', '{column}', {value})").fetchall()
    return not all(e for (e,) in excluded)


def page_index_everywhere(path, repeated=("city",)):
    """Every chunk of `path` has the offset index, and a column index but where it would only
    repeat the chunk's statistics: the `repeated` columns (a few values spread over every
    page, so every page has the chunk's min and max) and row groups of one page (these rows
    are far below 1 MiB a page, which ends at the first 1,024 rows past 20,000)."""
    meta = pq.ParquetFile(path).metadata
    for g in range(meta.num_row_groups):
        pages = meta.row_group(g).num_rows > 20_480
        for c in range(meta.num_columns):
            column = meta.row_group(g).column(c)
            assert column.has_offset_index, (path, g, c)
            assert column.has_column_index == (pages and column.path_in_schema not in repeated), (path, g, column)
    return meta


def test_inline_rows_with_the_page_index_bloom_filters_and_sort_by(s3):
    written = rows(40_000)
    with Function(s3) as f:
        # The default: the page index, no bloom filter, rows in arrival order.
        kind, reply = f.invoke({"rows": written, "targets": OUT})
        assert kind == "response", reply
        for path in files(s3, reply):
            page_index_everywhere(path)
            assert bloom_columns(path) == []
            assert pq.read_table(path).column("id").to_pylist() == [r["id"] for r in written]
        event = {"rows": written, "targets": OUT, "bloom_filter_columns": ["id", "city"],
                 "sort_by": ["ts", "id DESC"]}
        kind, reply = f.invoke(event)
        assert kind == "response", reply
        for path in files(s3, reply):
            page_index_everywhere(path)
            assert bloom_columns(path) == ["city", "id"]
            back = pq.read_table(path).to_pylist()
            assert sorted(r["id"] for r in back) == sorted(r["id"] for r in written)
            keys = [(r["ts"], -r["id"]) for r in back]
            assert keys == sorted(keys)
            assert all(probe(path, "id", r["id"]) for r in written[:2_000])
            absent = sum(probe(path, "id", 2_000_000 + k) for k in range(2_000))
            assert absent < 80, f"{absent} of 2,000 absent ids not ruled out (1% expected)"


def test_a_streamed_source_sorted_per_row_group_with_configured_filters(s3):
    with Function(s3, BLOOM_FILTER_COLUMNS="id", SORT_BY="ts, id", ROW_GROUP_ROWS="30000",
                  DEFAULT_TARGETS=json.dumps(OUT)) as f:
        written = rows(100_000)
        f.put("skip/big.ndjson", "\n".join(json.dumps(r) for r in written).encode())
        notification = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                     "s3": {"bucket": {"name": "in-bucket"},
                                            "object": {"key": "skip/big.ndjson", "size": 1}}}]}
        kind, reply = f.invoke(notification)
        assert kind == "response" and reply["rows"] == 100_000, reply
        for path in files(s3, reply):
            meta = page_index_everywhere(path)
            assert meta.num_row_groups == 4
            assert bloom_columns(path) == ["id"]
            file = pq.ParquetFile(path)
            ids = []
            for g in range(meta.num_row_groups):
                group = file.read_row_group(g).to_pylist()
                keys = [(r["ts"], r["id"]) for r in group]
                assert keys == sorted(keys), f"row group {g} is not sorted"
                ids += [r["id"] for r in group]
            assert sorted(ids) == sorted(r["id"] for r in written)
            assert all(probe(path, "id", r["id"]) for r in written[::50])


def test_bad_options_name_what_is_wrong_and_write_nothing(s3):
    with Function(s3) as f:
        before = sorted(p for p in s3.root.rglob("*") if p.is_file())
        for extra, says in [
            ({"bloom_filter_columns": ["nope"]}, "`bloom_filter_columns`: `nope` is not a column of the rows"),
            ({"bloom_filter_columns": ["flag"]}, "`flag` is a Boolean column"),
            ({"sort_by": ["nope"]}, "`sort_by`: the rows have no column `nope`"),
            ({"sort_by": ["id SIDEWAYS"]}, "`id SIDEWAYS` is not `column [ASC|DESC]"),
            ({"sort_by": "id"}, "`sort_by`: must be an array"),
        ]:
            kind, reply = f.invoke({"rows": [{"id": 1, "flag": True}], "targets": OUT, **extra})
            assert kind == "error" and reply["errorType"] == "InvalidEvent", reply
            assert says in reply["errorMessage"], reply
        assert sorted(p for p in s3.root.rglob("*") if p.is_file()) == before
    # A bad configured value stops the function at start, naming the option.
    for name, value, says in [("SORT_BY", "id DESC DESC", "`sort_by`: `id DESC DESC` is not"),
                              ("BLOOM_FILTER_COLUMNS", "id,,ts", "`bloom_filter_columns`: entry 1 is empty")]:
        done = subprocess.run([str(BOOTSTRAP)], env={**os.environ, name: value}, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode != 0 and "InvalidConfig" in done.stderr and says in done.stderr, done.stderr


def test_a_streamed_sources_row_groups_are_sized_by_bytes(s3):
    with Function(s3) as f:
        written = rows(100_000)
        f.put("skip/sized.ndjson", "\n".join(json.dumps(r) for r in written).encode())
        source = {"uri": "s3://in-bucket/skip/sized.ndjson"}
        kind, reply = f.invoke({"source": source, "targets": OUT, "row_group_bytes": 1 << 20})
        assert kind == "response" and reply["rows"] == 100_000, reply
        raw, snappy = files(s3, reply)
        meta = pq.ParquetFile(raw).metadata
        sizes = [meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)]
        # About 4 MB of encoded rows: row groups of about 1 MiB, none much past it.
        assert len(sizes) >= 3 and max(sizes) < 1.2 * (1 << 20), sizes
        assert pq.ParquetFile(snappy).metadata.num_row_groups == len(sizes)
        assert sorted(r["id"] for r in pq.read_table(raw).to_pylist()) == sorted(r["id"] for r in written)

        # The default at 128 MB: 8 MiB, so this object's 100,000 rows make one row group
        # (it made a row group per 122,880 rows before row groups were sized by bytes).
        kind, reply = f.invoke({"source": source, "targets": OUT})
        assert kind == "response", reply
        assert all(pq.ParquetFile(p).metadata.num_row_groups == 1 for p in files(s3, reply))

        before = sorted(p for p in s3.root.rglob("*") if p.is_file())
        for asked, says in [(32 << 20, "more than a function of 128 MB can build"),
                            (1000, "at least 1048576"), ("big", "whole number")]:
            kind, reply = f.invoke({"source": source, "targets": OUT, "row_group_bytes": asked})
            assert kind == "error" and reply["errorType"] == "InvalidEvent", reply
            assert "`row_group_bytes`" in reply["errorMessage"] and says in reply["errorMessage"], reply
        assert sorted(p for p in s3.root.rglob("*") if p.is_file()) == before
