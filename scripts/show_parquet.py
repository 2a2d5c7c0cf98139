#!/usr/bin/env python3
"""Prints each Parquet file under the given directories: its key, codec, schema and rows,
read back from the bytes with pyarrow. usage: show_parquet.py DIR [DIR ...]"""
import pathlib
import sys

import pyarrow.parquet as pq

for root in map(pathlib.Path, sys.argv[1:]):
    for path in sorted(root.rglob("*.parquet")):
        meta = pq.ParquetFile(path).metadata
        table = pq.read_table(path)
        codecs = sorted({meta.row_group(0).column(i).compression for i in range(meta.num_columns)})
        print(f"\n{path.relative_to(root)}  ({path.stat().st_size} bytes, codec {', '.join(codecs)}, "
              f"{meta.num_rows} rows, created by {meta.created_by})")
        for field in table.schema:
            print(f"  {field.name}: {field.type}")
        for row in table.to_pylist():
            print(f"  {row}")
