"""The anchor of the end-to-end target: the same job as a Python Lambda would do it with pyarrow
and boto3 (what users replace with our function). It takes our event shape (`rows`, `targets`
with `prefix` and `compression`), builds one table, writes one Parquet object per target and
puts it to S3. bench/run.py runs it under the same Runtime API emulator and embedded S3
server as the release `bootstrap`, through awslambdaric (the runtime interface client of AWS's
Python images): `python -m awslambdaric python_lambda.handler`.

The client is built once, at init, as a Lambda should; `AWS_ENDPOINT_URL_S3` points it at the
local server."""
import io
import uuid

import boto3
import botocore.config
import pyarrow as pa
import pyarrow.parquet as pq

S3 = boto3.client("s3", config=botocore.config.Config(s3={"addressing_style": "path"}))


def handler(event, context):
    table = pa.Table.from_pylist(event["rows"])
    written = []
    for target in event["targets"]:
        bucket, _, prefix = target["prefix"].removeprefix("s3://").partition("/")
        codec = target.get("compression", "snappy")
        body = io.BytesIO()
        pq.write_table(table, body, compression="none" if codec == "uncompressed" else codec)
        key = f"{prefix}part-00000-{uuid.uuid4()}.parquet"
        S3.put_object(Bucket=bucket, Key=key, Body=body.getvalue())
        written.append({"key": f"s3://{bucket}/{key}", "bytes": body.tell()})
    return {"rows": table.num_rows, "written": written}
