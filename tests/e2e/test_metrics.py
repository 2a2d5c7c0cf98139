"""What the built `bootstrap` tells CloudWatch, run as Lambda runs it (the Runtime API emulator,
bench/emulator.py) with Lambda's JSON log format: each invocation (a conversion, a source
object, a bad event, an SQS batch with a failed message) prints exactly one Embedded Metric
Format line, valid by the specification's rules
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html)
and carrying the right values; every log line of an invocation carries its request id and its
X-Ray trace id, and so does every S3 request it makes (the SDK's `X-Amzn-Trace-Id`); no key,
URI or row value is a metric or a dimension.

Run by scripts/test after stack_start built the debug binaries."""
import json
import os
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import Emulator, LocalS3, Proxy, trace_id  # noqa: E402
from test_local_loop import rows_and_targets, stack_config  # noqa: E402

TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
NAMESPACE = "Test/RowsToParquet"
# The units the specification allows.
UNITS = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
         "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
         "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
         "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
         "Terabits/Second", "Count/Second", "None"}
# The members that are neither metrics nor dimensions.
PROPERTIES = {"_aws", "RequestId"}


def validate(line):
    """Asserts the specification's rules on one EMF document; returns {metric: (unit, value)}."""
    root = json.loads(line)
    meta = root["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 0, meta
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list) and directives, meta
    metrics, dimensions = {}, set()
    for directive in directives:
        assert isinstance(directive["Namespace"], str) and 1 <= len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30, dimension_set
            for name in dimension_set:
                dimensions.add(name)
                value = root[name]
                assert isinstance(value, str) and 1 <= len(value) <= 1024, (name, value)
        assert 1 <= len(directive["Metrics"]) <= 100, directive
        for metric in directive["Metrics"]:
            name, unit = metric["Name"], metric.get("Unit", "None")
            assert isinstance(name, str) and 1 <= len(name) <= 1024 and unit in UNITS, metric
            value = root[name]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values), (name, value)
            metrics[name] = (unit, value)
    for member, value in root.items():
        # Nothing about the data: every member is a metric, a dimension or a known property.
        assert member in metrics or member in dimensions or member in PROPERTIES, member
        assert "s3://" not in json.dumps(value), (member, value)
    return metrics


class TraceHeaders(Proxy):
    """A pass-through proxy in front of the S3 server that records each request's method and
    `X-Amzn-Trace-Id`."""

    def __init__(self, upstream_port):
        self.seen = []
        super().__init__(upstream_port, lambda r: self.seen.append((r.method, r.headers.get("X-Amzn-Trace-Id"))))


class Function:
    """The built function under the emulator, its output in a file read invocation by
    invocation."""

    def __init__(self, tmp):
        self.s3 = LocalS3.with_samples(TARGET / "debug" / "examples" / "local-s3", tmp / "s3")
        self.traces = TraceHeaders(self.s3.port)
        self.log = tmp / "function.log"
        env = {"AWS_ENDPOINT_URL_S3": self.traces.endpoint, "AWS_LAMBDA_LOG_FORMAT": "JSON",
               "METRICS_NAMESPACE": NAMESPACE, **stack_config()}
        self.emulator = Emulator(TARGET / "debug" / "rows-to-parquet", env, log=self.log)
        self.emulator.init_ms()
        self.read = 0

    def invoke(self, body):
        """(reply kind, answer, request id, the JSON lines it printed)."""
        request_id = self.emulator.submit(body)
        kind, answer, _ = self.emulator.answer(request_id, 30)
        text = self.log.read_text()
        lines, self.read = text[self.read:], len(text)
        return kind, answer, request_id, [json.loads(l) for l in lines.splitlines() if l.strip()]

    def stop(self):
        self.emulator.stop()
        self.traces.stop()
        self.s3.stop()


@pytest.fixture(scope="module")
def function(tmp_path_factory):
    running = Function(tmp_path_factory.mktemp("metrics"))
    yield running
    running.stop()


def sample(name):
    return (ROOT / "events" / f"{name}.json").read_bytes()


def one_emf(lines, request_id):
    """The invocation's one EMF line, validated; and a check of its other lines."""
    emf = [l for l in lines if "_aws" in l]
    assert len(emf) == 1, lines
    for line in lines:
        if "_aws" in line:
            continue
        span = line.get("span", {})
        assert (span.get("requestId"), span.get("xrayTraceId")) == (request_id, trace_id(request_id)), line
    assert emf[0]["RequestId"] == request_id
    return emf[0], validate(json.dumps(emf[0]))


def test_the_first_invocation_is_the_cold_start_and_a_conversion_counts_rows_objects_bytes(function):
    kind, answer, request_id, lines = function.invoke(sample("seed"))
    assert kind == "response", answer
    # Its S3 requests (its lease and look-ups, its PUTs) carry its trace header: with
    # Tracing=Active, X-Ray links them.
    seen = set(function.traces.seen)
    assert {header for _, header in seen} == {trace_id(request_id)}, seen
    assert {method for method, _ in seen} == {"PUT", "GET", "DELETE"}, seen
    line, metrics = one_emf(lines, request_id)
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["FunctionName", "Trigger"]]
    assert (line["FunctionName"], line["Trigger"]) == ("rows-to-parquet", "event")
    assert metrics["ColdStart"] == ("Count", 1)
    assert metrics["Rows"] == ("Count", 3)
    assert metrics["ObjectsWritten"] == ("Count", len(answer["objects"]))
    assert metrics["BytesWritten"] == ("Bytes", sum(o["bytes"] for o in answer["objects"]))
    assert metrics["InputBytes"] == ("Bytes", len(sample("seed")))
    assert (metrics["Failures"], metrics["SourceReads"]) == (("Count", 0), ("Count", 0))
    for phase in ("Parse", "Build", "Encode", "Upload"):
        unit, ms = metrics[f"{phase}Time"]
        assert unit == "Milliseconds" and ms > 0, (phase, ms)


def test_a_source_object_counts_its_read_and_its_bytes(function):
    kind, answer, request_id, lines = function.invoke(sample("source-ndjson"))
    assert kind == "response", answer
    line, metrics = one_emf(lines, request_id)
    assert metrics["ColdStart"] == ("Count", 0)
    assert metrics["SourceReads"] == ("Count", 1)
    assert metrics["InputBytes"] == ("Bytes", len(sample("source-ndjson")) + answer["source"]["bytes"])
    assert metrics["Rows"] == ("Count", answer["rows"])
    assert metrics["CommitTime"][1] > 0


def test_a_bad_event_counts_one_failure_of_its_error_type(function):
    kind, answer, request_id, lines = function.invoke(sample("invalid-row-not-object"))
    assert kind == "error" and answer["errorType"] == "InvalidEvent", answer
    line, metrics = one_emf(lines, request_id)
    assert metrics["Failures"] == ("Count", 1)
    assert metrics["Failures.InvalidEvent"] == ("Count", 1)
    assert (metrics["Rows"], metrics["ObjectsWritten"]) == (("Count", 0), ("Count", 0))


def test_an_sqs_batch_counts_its_failed_messages_by_error_type(function):
    body = sample("sqs-batch")
    kind, answer, request_id, lines = function.invoke(body)
    assert kind == "response", answer
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    assert failed, answer
    good = [json.loads(m["body"]) for m in json.loads(body)["Records"] if m["messageId"] not in failed]
    line, metrics = one_emf(lines, request_id)
    assert line["Trigger"] == "sqs"
    assert metrics["Failures"] == ("Count", 0), "the batch itself succeeded"
    assert metrics["FailedMessages"] == ("Count", len(failed))
    # Each failed message's errorType, as its log line gives it.
    kinds = [l["fields"]["error_type"] for l in lines if l.get("fields", {}).get("message") == "message failed"]
    assert len(kinds) == len(failed), kinds
    for kind in set(kinds):
        assert metrics[f"Failures.{kind}"] == ("Count", kinds.count(kind)), kind
    assert metrics["Rows"] == ("Count", sum(len(rows_and_targets(m)[0]) for m in good))
    expect = json.loads((ROOT / "events" / "sqs-batch.expect.json").read_text())
    assert metrics["ObjectsWritten"] == ("Count", expect["objectsWritten"])


def test_the_validator_refuses_what_cloudwatch_would_drop():
    good = {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
        {"Namespace": "N", "Dimensions": [["D"]], "Metrics": [{"Name": "M", "Unit": "Count"}]}]}, "D": "d", "M": 1}
    validate(json.dumps(good))
    for broken in (
        {**good, "M": "1"},  # a metric's value must be a number
        {**good, "_aws": {**good["_aws"], "CloudWatchMetrics": [
            {**good["_aws"]["CloudWatchMetrics"][0], "Metrics": [{"Name": "M", "Unit": "Rows"}]}]}},
        {k: v for k, v in good.items() if k != "M"},  # a declared metric with no value
        {**good, "_aws": {**good["_aws"], "CloudWatchMetrics": [
            {**good["_aws"]["CloudWatchMetrics"][0], "Dimensions": [[f"D{i}" for i in range(31)]]}]}},
    ):
        with pytest.raises((AssertionError, KeyError)):
            validate(json.dumps(broken))
