"""A Lambda Runtime API emulator on loopback, for running the built `bootstrap` as Lambda runs
it: the process polls `GET /2018-06-01/runtime/invocation/next`, gets one event with its
request id and deadline, and posts `/response` or `/error`. Also starts the embedded S3 server
(`examples/local-s3.rs`) the function writes to. Used by bench/run.py (init time, latency,
peak RSS) and bench/soak.py (1,000 mixed invocations, RSS drift).

Only the standard library: it runs before and without the virtualenv's packages."""
import http.server
import json
import os
import pathlib
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid

API = "/2018-06-01/runtime"
ACCESS_KEY, SECRET_KEY = "local-test-key", "local-test-secret"  # tests/common/s3_server.rs


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, seconds, what, proc):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")


def status_kib(pid, field):
    """`VmRSS` / `VmHWM` of a live process, in KiB."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid):
    """User + system CPU seconds of a live process."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def holds(got, want):
    """Whether a reply `got` holds everything in `want` (objects: at least its keys; arrays:
    the same length, element by element)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and all(k in got and holds(got[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(holds, got, want))
    return got == want


def trace_id(request_id):
    """The X-Ray trace header the emulator sends with `request_id`'s event (one per request,
    as Lambda's differ)."""
    return f"Root=1-00000000-{uuid.uuid5(uuid.NAMESPACE_OID, request_id).hex[:24]};Sampled=1"


class LocalS3:
    """examples/local-s3 serving a fresh directory with the given buckets."""

    def __init__(self, binary, root, buckets=("my-bucket",)):
        self.root = pathlib.Path(root)
        self.port = free_port()
        args = [str(binary), "--port", str(self.port), "--root", str(self.root)]
        for bucket in buckets:
            args += ["--bucket", bucket]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 30, "the local S3 server", self.proc)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    @classmethod
    def with_samples(cls, binary, root):
        """A server holding the buckets events/'s samples write to and read from, with the
        source objects they name (events/objects/)."""
        s3 = cls(binary, root, buckets=("my-bucket", "in-bucket"))
        s3.seed(pathlib.Path(__file__).resolve().parents[1] / "events" / "objects")
        return s3

    def seed(self, folder):
        """Stores every file under `folder/<bucket>/` as that bucket's object (s3s-fs keeps an
        object as the file at `root/<bucket>/<key>`)."""
        shutil.copytree(folder, self.root, dirs_exist_ok=True)

    def uploads(self):
        """The multipart uploads in progress (s3s-fs keeps one `.upload-<id>.json` file for
        each until it is completed or aborted)."""
        return {p.name for p in self.root.glob(".upload-*.json")}

    def objects(self, bucket="my-bucket"):
        """Every stored key (s3s-fs keeps its own metadata in hidden files)."""
        base = self.root / bucket
        return sorted(
            str(p.relative_to(base)) for p in base.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(base).parts)
        )

    def stop(self):
        self.proc.kill()
        self.proc.wait()


class Emulator:
    """Runs `bootstrap` (a path, or a command such as the arm64 one under qemu-aarch64)
    against this emulator; `invoke` hands it one event at a time. Its output goes to the file
    `log`, if given."""

    def __init__(self, bootstrap, env, timeout_s=30, log=None):
        self.timeout_s = timeout_s
        self.pending = queue.Queue()
        self.done = {}
        self.cond = threading.Condition()
        self.first_poll = None
        emulator = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != f"{API}/invocation/next":
                    return self.reply(404)
                if emulator.first_poll is None:
                    emulator.first_poll = time.perf_counter()
                request_id, payload, deadline_ms = emulator.pending.get()
                with emulator.cond:
                    emulator.done[request_id] = {"sent": time.perf_counter()}
                self.reply(200, payload, [
                    ("Lambda-Runtime-Aws-Request-Id", request_id),
                    ("Lambda-Runtime-Deadline-Ms", str(deadline_ms)),
                    ("Lambda-Runtime-Invoked-Function-Arn",
                     "arn:aws:lambda:us-east-1:123456789012:function:rows-to-parquet"),
                    ("Lambda-Runtime-Trace-Id", trace_id(request_id)),
                    ("Content-Type", "application/json"),
                ])

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = self.path[len(API):].strip("/").split("/")
                if parts[:2] == ["init", "error"]:
                    emulator.init_error = body
                    self.reply(202, b'{"status":"OK"}')
                    return
                if len(parts) != 3 or parts[0] != "invocation" or parts[2] not in ("response", "error"):
                    return self.reply(404)
                with emulator.cond:
                    entry = emulator.done.setdefault(parts[1], {})
                    entry.update(kind=parts[2], body=body, answered=time.perf_counter())
                    emulator.cond.notify_all()
                self.reply(202, b'{"status":"OK"}')

        self.init_error = None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        port = self.server.server_address[1]
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
            "AWS_LAMBDA_FUNCTION_NAME": "rows-to-parquet",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/rows-to-parquet",
            "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            **env,
        }
        self.log = open(log or os.devnull, "w")
        self.spawned = time.perf_counter()
        command = [str(part) for part in bootstrap] if isinstance(bootstrap, (list, tuple)) else [str(bootstrap)]
        self.proc = subprocess.Popen(command, env=full_env, stdout=self.log, stderr=self.log)

    def init_ms(self):
        """Spawn to the first `/next` poll."""
        end = time.monotonic() + 30
        while self.first_poll is None:
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the function never polled (exit {self.proc.poll()}, init error {self.init_error!r})")
            time.sleep(0.0005)
        return (self.first_poll - self.spawned) * 1e3

    def invoke(self, payload, deadline_s=None):
        """Returns ("response" | "error", parsed body, ms from handing the event over to the answer)."""
        request_id = self.submit(payload, deadline_s=deadline_s)
        answer = self.answer(request_id, self.timeout_s + 5)
        if answer is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the function exited ({self.proc.returncode}) during {request_id}")
            raise RuntimeError(f"no answer for {request_id} within {self.timeout_s + 5} s")
        return answer

    def submit(self, payload, request_id=None, deadline_s=None):
        """Queues one event (a retry passes the request id it repeats); returns its request id."""
        request_id = request_id or str(uuid.uuid4())
        deadline_ms = int((time.time() + (deadline_s or self.timeout_s)) * 1000)
        self.pending.put((request_id, payload, deadline_ms))
        return request_id

    def answer(self, request_id, wait_s):
        """("response" | "error", parsed body, ms) once the function answers `request_id`, or
        None if it has not within `wait_s` seconds or the process is gone."""
        end = time.monotonic() + wait_s
        with self.cond:
            while "kind" not in self.done.get(request_id, {}):
                if self.proc.poll() is not None or time.monotonic() >= end:
                    return None
                self.cond.wait(timeout=min(0.05, max(0.0, end - time.monotonic())))
            entry = self.done.pop(request_id)
        return entry["kind"], json.loads(entry["body"]), (entry["answered"] - entry["sent"]) * 1e3

    def rss_kib(self):
        return status_kib(self.proc.pid, "VmRSS")

    def peak_rss_kib(self):
        return status_kib(self.proc.pid, "VmHWM")

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.server.shutdown()
        self.log.close()


class Proxy:
    """A pass-through HTTP proxy on loopback in front of the server at `upstream_port` (the
    Host header goes on unchanged, so signatures still hold). `intercept(request)` sees each
    request first (`.method`, `.path`, `.headers`, `.body`) and may answer it itself with
    `(status, [(header, value)], body)`; `None` lets it through. It listens on `port` (0: a
    free one)."""

    def __init__(self, upstream_port, intercept=lambda request: None, port=0):
        import types

        self.upstream_port = upstream_port
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def relay(self):
                length = int(self.headers.get("Content-Length", 0) or 0)
                body = self.rfile.read(length) if length else None
                request = types.SimpleNamespace(method=self.command, path=self.path,
                                                headers=self.headers, body=body)
                status, headers, data = intercept(request) or proxy.forward(request)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def forward(self, request):
        """`request` as the upstream server answers it."""
        import http.client
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
        upstream.request(request.method, request.path, body=request.body, headers=dict(request.headers))
        reply = upstream.getresponse()
        answer = reply.status, reply.getheaders(), reply.read()
        upstream.close()
        return answer

    def stop(self):
        self.server.shutdown()
