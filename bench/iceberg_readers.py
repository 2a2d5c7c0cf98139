"""An Iceberg table read back as two engines read it, through moto's S3: pyiceberg (the main
virtualenv) and DuckDB 1.4.4's iceberg extension (its own virtualenv, DUCKDB_ICEBERG_VENV,
which scripts/setup makes: the extension files are LOADed from the PyPI packages, offline).
Both read the current snapshot or an older one by id. Used by the maintenance tests and
bench/maintenance.py."""
import json
import os
import pathlib
import subprocess
import time

# Runs in DuckDB's virtualenv: the rows of one scan, as JSON, and how long the scan took.
DUCKDB_SCAN = r'''
import duckdb, glob, json, sys, time
venv, port, location, snapshot, columns = sys.argv[1:6]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
base = glob.glob(f"{venv}/lib/python*/site-packages/duckdb_ext/extensions/*/*/")[0]
for extension in ("httpfs", "avro", "iceberg"):
    con.execute(f"LOAD '{base}{extension}.duckdb_extension'")
con.execute(f"CREATE SECRET (TYPE S3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', "
            f"ENDPOINT '127.0.0.1:{port}', URL_STYLE 'path', USE_SSL false)")
at = f", snapshot_from_id => {snapshot}" if snapshot != "current" else ""
started = time.perf_counter()
rows = con.execute(f"SELECT {columns} FROM iceberg_scan('{location}'{at})").fetchall()
print(json.dumps({"seconds": time.perf_counter() - started, "rows": [list(r) for r in rows]}, default=str))
'''


def duckdb_venv():
    venv = os.environ.get("DUCKDB_ICEBERG_VENV")
    if not venv:
        raise RuntimeError("DUCKDB_ICEBERG_VENV is not set: run through scripts/test or source scripts/env.sh")
    return pathlib.Path(venv)


def duckdb_scan(moto, metadata_location, snapshot_id=None, columns="*"):
    """`(rows, seconds)`: DuckDB's `iceberg_scan` of the table whose metadata file is
    `metadata_location`, at `snapshot_id` (None: the current snapshot); rows as lists."""
    venv = duckdb_venv()
    args = [str(venv / "bin" / "python"), "-c", DUCKDB_SCAN, str(venv), str(moto.port), metadata_location,
            "current" if snapshot_id is None else str(snapshot_id), columns]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"DuckDB could not read {metadata_location}: {out.stderr[-3000:]}")
    # The answer is the last line (an extension may print before it).
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    return answer["rows"], answer["seconds"]


def pyiceberg_scan(moto, name, snapshot_id=None, columns=("*",)):
    """`(arrow table, seconds)`: pyiceberg's scan of the table `name` (`database.table`) at
    `snapshot_id` (None: the current snapshot)."""
    table = moto.catalog().load_table(name)
    started = time.perf_counter()
    scan = table.scan(snapshot_id=snapshot_id, selected_fields=tuple(columns))
    arrow = scan.to_arrow()
    return arrow, time.perf_counter() - started
