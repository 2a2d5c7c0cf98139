"""The built `bootstrap` under the Runtime API emulator: against moto's server, the function
of the catalog tests (tables and datasets), started and invoked; against the embedded S3
server (`s3`, a module's fixture), the function of the source and file tests (`Function`)."""
import json
import os
import pathlib
import sys
import tempfile

import pyarrow.parquet as pq
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import Emulator, LocalS3  # noqa: E402

TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target")))
BOOTSTRAP = TARGET / "debug" / "rows-to-parquet"


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


@pytest.fixture(scope="module")
def s3():
    with tempfile.TemporaryDirectory() as root:
        server = LocalS3.with_samples(TARGET / "debug" / "examples" / "local-s3", root)
        try:
            yield server
        finally:
            server.stop()


class Function:
    """The bootstrap with `env`, against `s3`."""

    def __init__(self, s3, **env):
        self.s3 = s3
        self.emulator = Emulator(BOOTSTRAP, {"AWS_ENDPOINT_URL_S3": s3.endpoint, **env}, timeout_s=600)
        self.emulator.init_ms()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.emulator.stop()

    def put(self, key, body):
        path = self.s3.root / "in-bucket" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)

    def invoke(self, event):
        kind, body, _ = self.emulator.invoke(json.dumps(event).encode(), deadline_s=600)
        return kind, body

    def rows(self, event):
        """The rows every object written holds (the event must convert), and the schema."""
        kind, body = self.invoke(event)
        assert kind == "response", body
        tables = [pq.read_table(self.s3.root / o["bucket"] / o["key"]) for o in body["objects"]]
        assert tables, body
        assert all(t.schema == tables[0].schema for t in tables)
        return tables[0].schema, tables[0].to_pylist(), body
