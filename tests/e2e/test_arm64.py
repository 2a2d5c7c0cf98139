"""The artifact that ships: the arm64 `bootstrap` that `sam build` makes (template.yaml's
rust-cargolambda build, cross-compiled by cargo-lambda's zig), run under qemu-user
(`qemu-aarch64` with Debian's arm64 glibc) as Lambda runs it, against the Runtime API emulator
(bench/emulator.py), writing to the embedded S3 server. Every sample in events/ must come back
as its `.expect.json` says (the errorType, or the reply and the number of objects written), or
write objects that pyarrow reads back as the rows asked for; and an event at Lambda's 6 MB
payload limit converts every row.

Run by scripts/test after `sam build`, with the configuration stack.sh gives the local loop:
ARM64_BOOTSTRAP names the built file, ARM64_SYSROOT the arm64 glibc (scripts/env.sh)."""
import json
import os
import pathlib
import sys

import pyarrow.parquet as pq
import pytest

from test_local_loop import (DEFAULT_TARGETS, EVENTS, WRITTEN, canon, check_written, expected,
                             read_pyarrow, sample_expectation, stack_config)

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from emulator import Emulator, LocalS3, holds  # noqa: E402

TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# Lambda's limit for a synchronous invocation's payload.
PAYLOAD_LIMIT = 6 * 1024 * 1024
ELF_AARCH64 = 183  # e_machine of an ELF file for the Arm 64-bit architecture


class Arm64:
    """The emulated function, the S3 server it writes to, and each sample's outcome."""

    def __init__(self, s3, function):
        self.s3, self.function, self.runs = s3, function, {}

    def stamps(self):
        """Every stored object of my-bucket with its modification time (a rewrite counts)."""
        base = self.s3.root / "my-bucket"
        return {key: (base / key).stat().st_mtime_ns for key in self.s3.objects()}

    def invoke(self, body):
        """(kind, answer, objects written or rewritten) of one invocation."""
        before = self.stamps()
        kind, answer, _ = self.function.invoke(body)
        written = sum(1 for key, stamp in self.stamps().items() if before.get(key) != stamp)
        return kind, answer, written

    def local(self, uri):
        """Where the server keeps the object at `uri` (s3s-fs: `root/<bucket>/<key>`)."""
        return self.s3.root / uri.removeprefix("s3://")


@pytest.fixture(scope="module")
def arm64(tmp_path_factory):
    bootstrap = pathlib.Path(os.environ["ARM64_BOOTSTRAP"])
    s3 = LocalS3.with_samples(TARGET / "debug" / "examples" / "local-s3", tmp_path_factory.mktemp("s3"))
    env = {"AWS_ENDPOINT_URL_S3": s3.endpoint, **stack_config()}
    # Emulated, the function is about ten times slower: the deadline allows for it.
    function = Emulator(["qemu-aarch64", "-L", os.environ["ARM64_SYSROOT"], bootstrap], env, timeout_s=120)
    try:
        print(f"\narm64 bootstrap under qemu-user: init {function.init_ms():.0f} ms")
        run = Arm64(s3, function)
        for path in EVENTS:
            run.runs[path.stem] = run.invoke(path.read_bytes())
        yield run
    finally:
        function.stop()
        s3.stop()


def test_the_bootstrap_is_the_arm64_build():
    header = pathlib.Path(os.environ["ARM64_BOOTSTRAP"]).read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_AARCH64, header


@pytest.mark.parametrize("name", [p.stem for p in EVENTS])
def test_sample(arm64, name):
    kind, answer, written = arm64.runs[name]
    event = json.loads((ROOT / "events" / f"{name}.json").read_text())
    expect = sample_expectation(name)
    if "errorType" in expect:
        assert kind == "error", answer
        assert answer["errorType"] == expect["errorType"], answer
        assert expect["messageContains"] in answer["errorMessage"], answer
    else:
        assert kind == "response", answer
    if "reply" in expect:
        assert holds(answer, expect["reply"]), answer
    if "objectsWritten" in expect:
        assert written == expect["objectsWritten"], answer
    if expect:
        return
    files = [(obj, arm64.local(obj["uri"])) for obj in answer["objects"] if not event.get("dry_run")]
    check_written(event, answer, files)
    assert written == len(files)
    if name in WRITTEN:
        names, types, not_null, rows = expected(name, event)
        for _, path in files:
            got_names, got_types, got_not_null, got_rows = read_pyarrow(path, None)
            assert (got_names, got_types, got_not_null) == (names, types, not_null), path
            assert canon(got_rows) == canon(rows), path


def six_mb_event():
    """Rows of several types, as many as fit under Lambda's payload limit."""
    def dumps(value):
        return json.dumps(value, ensure_ascii=False).encode()

    rows, size = [], len(dumps({"rows": [], "targets": DEFAULT_TARGETS}))
    cities = ["New York", "Zürich", "São Paulo", "東京", "Lagos"]
    while True:
        i = len(rows)
        row = {"id": i, "name": f"user {i}", "age": i % 97, "city": cities[i % 5],
               "score": i / 8, "active": i % 3 == 0, "note": None if i % 7 else f"n{i}"}
        size += len(dumps(row)) + (2 if rows else 0)  # ", " before every row but the first
        if size > PAYLOAD_LIMIT:
            break
        rows.append(row)
    return rows, dumps({"rows": rows, "targets": DEFAULT_TARGETS})


def test_an_event_at_the_payload_limit_converts_every_row(arm64):
    rows, body = six_mb_event()
    assert PAYLOAD_LIMIT - 1024 < len(body) <= PAYLOAD_LIMIT, len(body)
    kind, answer, written = arm64.invoke(body)
    assert kind == "response", answer
    assert answer["rows"] == len(rows) and written == len(DEFAULT_TARGETS), answer
    for obj in answer["objects"]:
        table = pq.read_table(arm64.local(obj["uri"]))
        assert table.column_names == list(rows[0])
        assert table.to_pylist() == rows, obj["uri"]
