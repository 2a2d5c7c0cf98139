"""The built `bootstrap` under the Runtime API emulator, against moto's server: the function
of the catalog tests (tables and datasets), started and invoked."""
import json
import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import Emulator  # noqa: E402

BOOTSTRAP = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))) / "debug" / "rows-to-parquet"


def function(moto, **env):
    """The function with `moto`'s Glue and S3, and `env`, started."""
    emulator = Emulator(BOOTSTRAP, {**moto.function_env(), **env})
    emulator.init_ms()
    return emulator


def invoke(emulator, event, request_id=None):
    """`(kind, body)`: "response" or "error", and the reply."""
    request_id = emulator.submit(json.dumps(event).encode(), request_id=request_id)
    answer = emulator.answer(request_id, 60)
    assert answer is not None, "no answer"
    return answer[0], answer[1]


def map_run(moto, bucket, name, replies, failed=0):
    """A map run's ResultWriter export of `replies` (each a child execution's output) in
    `bucket`, with `failed` failed result files: its ResultWriterDetails and MapRunArn."""
    s3 = moto.client("s3")
    executions = [{"Name": str(i), "Status": "SUCCEEDED", "Output": json.dumps(reply)} for i, reply in enumerate(replies)]
    s3.put_object(Bucket=bucket, Key=f"jobs/{name}/SUCCEEDED_0.json", Body=json.dumps(executions).encode())
    files = {"SUCCEEDED": [{"Key": f"jobs/{name}/SUCCEEDED_0.json", "Size": 1}],
             "FAILED": [{"Key": f"jobs/{name}/FAILED_{i}.json", "Size": 1} for i in range(failed)], "PENDING": []}
    manifest = {"DestinationBucket": bucket, "MapRunArn": f"arn:aws:states:us-east-1:123456789012:mapRun:job/{name}",
                "ResultFiles": files}
    s3.put_object(Bucket=bucket, Key=f"jobs/{name}/manifest.json", Body=json.dumps(manifest).encode())
    return {"Bucket": bucket, "Key": f"jobs/{name}/manifest.json"}, manifest["MapRunArn"]
