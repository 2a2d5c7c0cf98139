"""template.yaml's own state machine (its definition, the substitutions filled in as
CloudFormation fills them) run by moto's Step Functions interpreter, whose Lambda calls reach
the built `bootstrap` under the Runtime API emulator (two of them, as two execution
environments), against moto's S3:

- a job plans the prefix into batches by bytes (the function's plan step), the DISTRIBUTED
  map reads the plan (`ItemReader` on `s3:getObject`, JSON) and hands each element's `Items`
  with the job's options to the function (`ItemSelector`), and the finish step commits from
  the plan and the batches' manifests: one file per partition per target per batch, every
  row once, the markers listing every file, each child's input and each reply under Step
  Functions' 256 KiB;
- a batch that fails fails the run: no marker;
- `mode: overwrite` in the execution's input reaches the finish step, which removes what the
  job did not write.

What the interpreter does not cover is listed in docs/partitions-and-jobs.md. Run by
scripts/test after the debug binaries are built."""
import io
import json
import pathlib
import sys

import pyarrow.parquet as pq
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from local_catalog import environment  # noqa: E402
from local_states import FUNCTION_ARN, StepFunctions, template_definition  # noqa: E402
from helpers import function  # noqa: E402

IN, LAKE = "job-input", "job-lake"
OBJECTS, ROWS = 12, 40
LIMIT = 256 << 10
TARGETS = [f"s3://{LAKE}/out/parquet/", f"s3://{LAKE}/out/parquet-snappy/"]


def ndjson(n):
    return "".join(json.dumps({"id": n * ROWS + i, "dt": f"2024-01-0{i % 3 + 1}", "pad": "x" * 30}) + "\n"
                   for i in range(ROWS)).encode()


# Four objects a batch (the largest four fit, five of the smallest do not): three batches.
OBJECT_BYTES = max(len(ndjson(n)) for n in range(OBJECTS))
SUBSTITUTIONS = {"FunctionArn": FUNCTION_ARN, "InputBucket": IN, "InputPrefix": "in/",
                 "ResultsBucket": LAKE, "ResultsPrefix": "out/_jobs", "MaxConcurrency": 2,
                 "BatchSize": 1000, "BatchBytes": 4 * OBJECT_BYTES, "ToleratedFailurePercentage": 0}


@pytest.fixture(scope="module")
def states():
    with environment():
        # The function's configuration as template.yaml sets it.
        env = {"DEFAULT_TARGETS": json.dumps([{"prefix": TARGETS[0], "compression": "uncompressed"},
                                              {"prefix": TARGETS[1], "compression": "snappy"}]),
               "ALLOWED_PREFIXES": f"s3://{LAKE}/out/", "ALLOWED_SOURCES": f"s3://{IN}/in/"}
        server = StepFunctions(lambda moto: function(moto, **env), buckets=[IN, LAKE])
        s3 = server.moto.client("s3")
        for n in range(OBJECTS):
            s3.put_object(Bucket=IN, Key=f"in/2024/part-{n:02}.ndjson", Body=ndjson(n))
        server.machine = server.create(template_definition(SUBSTITUTIONS))
        yield server
        server.stop()


def read(states, key):
    return states.moto.client("s3").get_object(Bucket=LAKE, Key=key)["Body"].read()


def marker(states, target):
    return json.loads(read(states, target.split("/", 3)[3] + "_SUCCESS"))


def test_the_template_plans_the_prefix_converts_each_batch_and_commits_every_row(states):
    states.invocations.clear()
    run = states.run(states.machine, {"prefix": "in/2024/", "partition_by": ["dt"]}, "run-1")
    assert run["status"] == "SUCCEEDED", run
    output = json.loads(run["output"])
    assert output["phase"] == "finish"
    # Three batches of four objects, three days each: nine files per target, not 36.
    assert [(m["objects"], m["rows"]) for m in output["markers"]] == [(9, OBJECTS * ROWS)] * 2

    plan = json.loads(read(states, "out/_jobs/run-1/plan.json"))
    assert [len(element["Items"]) for element in plan] == [4, 4, 4]
    assert [i["Key"] for e in plan for i in e["Items"]] == [f"in/2024/part-{n:02}.ndjson" for n in range(OBJECTS)]
    assert len(states.moto.keys(LAKE, "out/_jobs/run-1/batches/")) == 3

    kinds = [next(iter(event)) if "Items" not in event else "Items" for event, _, _ in states.invocations]
    assert sorted(kinds) == sorted(["plan", "commit", "Items", "Items", "Items", "commit"]), kinds
    for event, kind, reply in states.invocations:
        assert kind == "response", reply
        assert len(json.dumps(event)) < LIMIT and len(json.dumps(reply)) < LIMIT
        if "Items" in event:
            assert event["BatchInput"]["manifests"] == f"s3://{LAKE}/out/_jobs/run-1/batches/"
            assert "batch" in reply, "a batch answers with a reference to its manifest"

    for target in TARGETS:
        listed = marker(states, target)
        seen = []
        for name in listed["filenames"]:
            table = pq.read_table(io.BytesIO(read(states, target.split("/", 3)[3] + name)))
            assert "dt" not in table.column_names, "the partition column lives in the path"
            assert name.split("/")[0] in ("dt=2024-01-01", "dt=2024-01-02", "dt=2024-01-03")
            seen += table.column("id").to_pylist()
        assert sorted(seen) == list(range(OBJECTS * ROWS)), "every row once"


def test_a_failing_batch_fails_the_run_and_no_marker_is_written(states):
    s3 = states.moto.client("s3")
    s3.put_object(Bucket=IN, Key="in/bad/a.ndjson", Body=ndjson(100))
    s3.put_object(Bucket=IN, Key="in/bad/b.ndjson", Body=b'{"id": 1, "dt": "2024-01-01"}\n{"id": \n')
    run = states.run(states.machine, {"prefix": "in/bad/", "partition_by": ["dt"]}, "run-bad")
    assert run["status"] == "FAILED", run
    for target in TARGETS:
        assert not states.moto.keys(LAKE, target.split("/", 3)[3] + "_SUCCESS")
    # The batch wrote nothing: its good object's rows are not in the folders either.
    batches = states.moto.keys(LAKE, "out/_jobs/run-bad/batches/")
    assert batches == []


def test_mode_overwrite_in_the_execution_input_reaches_the_finish_step(states):
    s3 = states.moto.client("s3")
    s3.put_object(Bucket=LAKE, Key="out/parquet/dt=2023-12-31/old.parquet", Body=b"old")
    run = states.run(states.machine, {"prefix": "in/2024/", "partition_by": ["dt"], "mode": "overwrite"},
                     "run-overwrite")
    assert run["status"] == "SUCCEEDED", run
    output = json.loads(run["output"])
    assert "out/parquet/dt=2023-12-31/old.parquet" in json.dumps(output["removed"])
    kept = states.moto.keys(LAKE, "out/parquet/")
    assert "out/parquet/dt=2023-12-31/old.parquet" not in kept
    listed = marker(states, TARGETS[0])["filenames"]
    assert sorted(kept) == sorted(["out/parquet/_SUCCESS"] + [f"out/parquet/{f}" for f in listed])
