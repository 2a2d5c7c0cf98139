"""moto's server as the local AWS Glue Data Catalog and S3 of the table tests and
bench/tables.py (one port for both), with the clients that check what the function committed:
boto3 for Glue and S3 as stored, pyiceberg for the tables as an engine reads them. Needs the
virtualenv's moto, boto3 and pyiceberg."""
import contextlib
import json
import os
import subprocess
import sys
import pathlib

from emulator import Proxy, free_port, wait_for_port

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}


class Moto:
    """`moto_server` on a free port, with `buckets` and Glue `databases` created (`env`: more
    of its environment)."""

    def __init__(self, buckets=(), databases=(), env=None):
        self.port = free_port()
        server = pathlib.Path(sys.executable).parent / "moto_server"
        self.proc = subprocess.Popen([str(server), "-p", str(self.port)], env={**os.environ, **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 60, "moto's server", self.proc)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        for bucket in buckets:
            self.client("s3").create_bucket(Bucket=bucket)
        for database in databases:
            self.client("glue").create_database(DatabaseInput={"Name": database})

    def function_env(self):
        """What the function needs to use this server for Glue and S3."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_ENDPOINT_URL_GLUE": self.endpoint}

    def client(self, service):
        import boto3
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self, bucket, prefix=""):
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def catalog(self):
        """pyiceberg's Glue catalog over this server."""
        from pyiceberg.catalog import load_catalog
        props = {"glue.endpoint": self.endpoint, "s3.endpoint": self.endpoint,
                 "glue.region": REGION, "s3.region": REGION}
        for service in ("glue", "s3"):
            props[f"{service}.access-key-id"] = "testing"
            props[f"{service}.secret-access-key"] = "testing"
        return load_catalog("local", type="glue", **props)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@contextlib.contextmanager
def environment():
    """The test process's own AWS settings must not leak into boto3 or pyiceberg; restored
    on leaving, so a test module that follows (the AWS CLI against the embedded S3, with its
    own credentials) is not handed moto's."""
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_GLUE"):
        os.environ.pop(name, None)
    os.environ.update(CREDENTIALS)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class VersionedGlue(Proxy):
    """A proxy in front of moto's Glue that refuses an `UpdateTable` whose `VersionId` is not
    the table's current one with `ConcurrentModificationException`, as Glue does (moto accepts
    a stale one). Check and update happen under one lock, so of two commits made from the same
    version exactly one lands. `conflicts` counts the refusals, `updates` the others. It also
    refuses a `BatchCreatePartition` of more than Glue's 100 partitions and a
    `BatchDeletePartition` of more than 25 (moto takes any number); `partition_calls` counts
    both calls."""

    def __init__(self, moto):
        import threading

        self.conflicts = 0
        self.updates = 0
        self.partition_calls = 0
        lock = threading.Lock()
        refusal = json.dumps({"__type": "ConcurrentModificationException",
                              "Message": "Update table failed due to concurrent modifications."}).encode()
        too_many = json.dumps({"__type": "ValidationException",
                               "Message": "1 validation error detected: Value at 'partitionInputList' failed to satisfy constraint: Member must have length less than or equal to 100"}).encode()
        json_type = [("Content-Type", "application/x-amz-json-1.1")]

        def check(request):
            target = request.headers.get("X-Amz-Target")
            if target == "AWSGlue.BatchCreatePartition":
                self.partition_calls += 1
                if len(json.loads(request.body)["PartitionInputList"]) > 100:
                    return 400, json_type, too_many
                return None
            if target == "AWSGlue.BatchDeletePartition":
                self.partition_calls += 1
                if len(json.loads(request.body)["PartitionsToDelete"]) > 25:
                    return 400, json_type, too_many.replace(b"partitionInputList", b"partitionsToDelete").replace(b"100", b"25")
                return None
            if target != "AWSGlue.UpdateTable":
                return None
            update = json.loads(request.body)
            with lock:
                current = moto.client("glue").get_table(
                    DatabaseName=update["DatabaseName"], Name=update["TableInput"]["Name"])["Table"]
                if update.get("VersionId") != current.get("VersionId"):
                    self.conflicts += 1
                    return 400, json_type, refusal
                self.updates += 1
                return self.forward(request)

        super().__init__(moto.port, check)
