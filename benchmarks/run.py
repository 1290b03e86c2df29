"""``make bench``: a reproducible benchmark of cocm-api, written to ``benchmarks/RESULTS.md``.

The service and the baselines run as uvicorn subprocesses (one worker, 127.0.0.1, access log off);
the load comes from ``wrk`` (Lua scripts post the bodies) and, for the sequential page walks, from
this process over HTTP. Nothing is measured inside the server process. Every figure is reported
next to the baselines measured in the same run (see README.md).

    python benchmarks/run.py --database both          # the whole run (5 min today; see RESULTS.md)
    python benchmarks/run.py --database sqlite --quick
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg  # the service's own driver (run this script with the venv's python)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import payloads  # noqa: E402

from app.settings import Settings  # noqa: E402

BIN = Path(os.environ.get("VENV_BIN", ROOT / ".venv" / "bin"))
HOST = "127.0.0.1"
LUA = HERE / "wrk" / "post.lua"
RESULTS = HERE / "RESULTS.md"
PROFILES = HERE / "profiles"
FHIR_JSON = "application/fhir+json"

# Reference numbers on the project's 2-core machine (the issue), for orientation only.
REFERENCE_ECHO_RPS = 1700
REFERENCE_FLOOR_RPS = 670

# Targets (the issue).
TARGET_QR_VS_FLOOR = 0.8
STEP_QR_VS_FLOOR = {"sqlite": 0.4, "postgresql": 0.3}  # issue 14's step towards it
TARGET_BUNDLE_RPS = 2000  # resources per second
TARGET_BILLING_1K_S = 1.0
TARGET_SCALE_4K = 4.5

ANALYSIS_START = "<!-- analysis: kept across runs, edit by hand -->"
ANALYSIS_END = "<!-- /analysis -->"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------- tools
def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("wrk is missing: installing it with apt-get (Debian package wrk)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit(
        "benchmarks: the load tool wrk is not installed. Install it (Debian/Ubuntu: "
        "`sudo apt-get install -y wrk`, macOS: `brew install wrk`) and run again."
    )


def py_spy() -> str | None:
    candidate = BIN / "py-spy"
    if candidate.exists():
        return str(candidate)
    log("py-spy is missing: installing it into the venv (pip install py-spy)")
    done = subprocess.run([str(BIN / "pip"), "install", "--quiet", "py-spy"], check=False)
    return str(candidate) if done.returncode == 0 and candidate.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------- machine
def replace_section(start: str, end: str, section: str) -> None:
    """Put ``section`` between the ``start`` and ``end`` markers of RESULTS.md (appended the first time)."""
    text = RESULTS.read_text()
    text = (
        text.split(start, 1)[0] + section + text.split(end, 1)[1]
        if start in text
        else text.rstrip() + "\n\n" + section
    )
    RESULTS.write_text(text)


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    wrk_version = (
        subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
        if shutil.which("wrk")
        else None
    )
    versions = subprocess.run(
        [
            str(BIN / "python"),
            "-c",
            "import importlib.metadata as m;print(' '.join(f'{p} {m.version(p)}' for p in "
            "['fastapi','uvicorn','pydantic','fhir.resources','sqlalchemy','psycopg','orjson']))",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": versions,
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0] if wrk_version else "?",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# ---------------------------------------------------------------------------------------- servers
class Server:
    """``uvicorn <target>`` on 127.0.0.1, one worker (or ``workers``), no access log, output to a
    log file."""

    def __init__(self, target: str, env: dict[str, str], workdir: Path, name: str, workers: int = 1) -> None:
        self.target = target
        self.workers = workers
        self.env = env
        self.port = free_port()
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "uvicorn"),
                    self.target,
                    "--host",
                    HOST,
                    "--port",
                    str(self.port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                    "--workers",
                    str(self.workers),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.target} exited at start; see {self.log_path}")
            with contextlib.suppress(OSError):
                status, _ = self.request("GET", "/health", timeout=2)
                if status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.target} did not answer /health within 60 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def connection(self, timeout: float = 300) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def request(
        self, method: str, path: str, body: bytes | None = None, timeout: float = 300
    ) -> tuple[int, bytes]:
        conn = self.connection(timeout)
        try:
            headers = {"Content-Type": FHIR_JSON} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


# ------------------------------------------------------------------------------------------ wrk
@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    connections: int

    def row(self) -> str:
        return f"{self.rps:,.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms"


def wrk(url: str, body: Path, seconds: float, connections: int, content_type: str = FHIR_JSON) -> WrkResult:
    env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_CONTENT_TYPE": content_type}
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "60s",
        "-s",
        str(LUA),
        url,
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False)
    match = re.search(r"^WRKJSON (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    data = json.loads(match.group(1))
    secs = data["duration_us"] / 1e6
    errors = sum(
        data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return WrkResult(
        requests=data["requests"],
        seconds=secs,
        rps=data["requests"] / secs,
        p50_ms=data["lat_p50_us"] / 1000,
        p99_ms=data["lat_p99_us"] / 1000,
        max_ms=data["lat_max_us"] / 1000,
        errors=errors,
        connections=connections,
    )


def wrk_measured(url: str, body: Path, args: argparse.Namespace, connections: int, label: str) -> WrkResult:
    wrk(url, body, args.warmup, connections)  # warm-up, discarded
    result = wrk(url, body, args.duration, connections)
    log(f"  {label}: {result.row()}, {result.requests} requests, {result.errors} errors")
    if result.errors:
        raise RuntimeError(f"{label}: {result.errors} failed requests (non-2xx, timeouts or socket errors)")
    return result


# --------------------------------------------------------------------------------------- databases
@contextlib.contextmanager
def fresh_database(kind: str, admin_url: str, workdir: Path) -> Iterator[str]:
    """A new empty database migrated to head; removed afterwards."""
    if kind == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="cocm-bench-", dir=workdir)) / "bench.db"
        url = f"sqlite:///{path}"
        migrate(url)
        try:
            yield url
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)
        return
    name = f"cocm_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(url: str) -> None:
    subprocess.run(
        [str(BIN / "cocm"), "migrate"],
        cwd=ROOT,
        env=server_env(url),
        check=True,
        capture_output=True,
        timeout=300,
    )


def server_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COCM_")}
    env.update(COCM_DATABASE_URL=url, COCM_TIMEZONE="UTC", PYTHONUNBUFFERED="1")
    return env


# ----------------------------------------------------------------------------------- HTTP helpers
def post_json(server: Server, path: str, data: dict[str, Any]) -> dict[str, Any]:
    status, body = server.request("POST", path, json.dumps(data).encode())
    if status not in {200, 201}:
        raise RuntimeError(f"POST {path} answered {status}: {body[:300]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


@dataclass
class LoadResult:
    patients: int
    resources: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.resources / self.seconds


def load(server: Server, first: int, count: int, concurrency: int = 4) -> LoadResult:
    """Enroll ``count`` patients through ``POST /fhir`` transactions (``concurrency`` clients)."""
    bodies = [json.dumps(b).encode() for b in payloads.load_bundles(first, count)]
    resources = count * payloads.ENTRIES_PER_PATIENT
    queue = list(enumerate(bodies))
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        conn = server.connection()
        try:
            while True:
                with lock:
                    if not queue or failures:
                        return
                    index, body = queue.pop(0)
                conn.request("POST", "/fhir", body=body, headers={"Content-Type": FHIR_JSON})
                response = conn.getresponse()
                data = response.read()
                if response.status != 200:
                    failures.append(f"bundle {index}: {response.status} {data[:300]!r}")
                    return
                statuses = Counter(e["response"]["status"][:3] for e in json.loads(data)["entry"])
                if set(statuses) != {"201"}:
                    failures.append(f"bundle {index}: entry statuses {dict(statuses)}")
                    return
        finally:
            conn.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError("loading failed: " + "; ".join(failures[:3]))
    return LoadResult(count, resources, elapsed)


def walk(server: Server, path: str, limit: int, latencies: list[float] | None = None) -> tuple[int, int]:
    """GET every page of a cursor-paged list; (items, pages). ``latencies``: each page's seconds
    are appended."""
    conn = server.connection()
    items = pages = 0
    cursor: str | None = None
    try:
        while True:
            url = f"{path}&limit={limit}" + (f"&cursor={quote(cursor)}" if cursor else "")
            started = time.perf_counter()
            conn.request("GET", url)
            response = conn.getresponse()
            body = response.read()
            if latencies is not None:
                latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"GET {url} answered {response.status}: {body[:200]!r}")
            data = json.loads(body)
            items += len(data["items"])
            pages += 1
            cursor = data.get("next_cursor")
            if not cursor:
                return items, pages
    finally:
        conn.close()


@dataclass
class WalkResult:
    items: int
    pages: int
    limit: int
    median_s: float
    best_s: float
    runs: int


def timed_walk(server: Server, path: str, limit: int, runs: int, budget_s: float = 20) -> WalkResult:
    """Median of up to ``runs`` cold walks after a one-page warm-up; stops repeating once ``budget_s``
    is spent (a slow walk at the large size is measured once or twice, not ``runs`` times).

    The service caches a tenant's month and registry per data version, so a repeated walk would
    only measure the cache: before each walk a bare Patient is written (it changes the version but
    neither the month nor the caseload), so every measured walk computes the month again."""
    server.request("GET", f"{path}&limit=1")  # warm-up: code paths, connections
    times: list[float] = []
    items = pages = 0
    while len(times) < runs and sum(times) < budget_s:
        server.request("POST", "/fhir/Patient", b'{"resourceType": "Patient"}')
        started = time.perf_counter()
        items, pages = walk(server, path, limit)
        times.append(time.perf_counter() - started)
    return WalkResult(items, pages, limit, statistics.median(times), min(times), len(times))


@dataclass
class CsvResult:
    rows: int
    size: int
    seconds: float
    hwm_before_kib: int
    hwm_after_kib: int


@dataclass
class MixedResult:
    post: WrkResult
    pages: int
    page_p50_ms: float
    page_p99_ms: float


def mixed_run(server: Server, body: Path, paths: list[str], args: argparse.Namespace) -> MixedResult:
    """wrk POSTs the PHQ-9 while one client walks ``paths`` (the month's billing and the registry,
    every page, limit 100, over and over): the POST latencies from wrk, each page's from here."""
    latencies: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for path in paths:
                walk(server, path, 100, latencies)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        post = wrk(server.url("/fhir/QuestionnaireResponse"), body, args.duration, args.connections)
    finally:
        stop.set()
        thread.join()
    quantiles = statistics.quantiles(latencies, n=100)
    return MixedResult(post, len(latencies), statistics.median(latencies) * 1000, quantiles[98] * 1000)


def csv_export(server: Server) -> CsvResult:
    """Stream the month's CSV from a freshly started server; VmHWM (peak RSS) before and after."""
    server.restart()
    server.request("GET", "/api/v1/billing?month=2026-01&limit=1")  # touch the code path once
    before = server.status_kib("VmHWM")
    conn = server.connection()
    started = time.perf_counter()
    size = rows = 0
    try:
        conn.request("GET", f"/api/v1/billing.csv?month={payloads.BILLED_MONTH}")
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"billing.csv answered {response.status}")
        while chunk := response.read(65536):
            size += len(chunk)
            rows += chunk.count(b"\n")
    finally:
        conn.close()
    elapsed = time.perf_counter() - started
    return CsvResult(rows - 1, size, elapsed, before, server.status_kib("VmHWM"))


# ---------------------------------------------------------------------------------------- profile
def profile(
    spy: str, pid: int, seconds: float, name: str, drive: Callable[[], None]
) -> list[tuple[str, float, float]]:
    """py-spy record (raw collapsed stacks + flamegraph SVG) while ``drive`` runs the load."""
    PROFILES.mkdir(exist_ok=True)
    raw, svg = PROFILES / f"{name}.txt", PROFILES / f"{name}.svg"
    spies = [
        subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(round(seconds)),
                "--rate",
                "200",
                "--nonblocking",
                "--format",
                fmt,
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for fmt, out in (("raw", raw), ("flamegraph", svg))
    ]
    time.sleep(1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        drive()
    for spy_proc in spies:
        _, err = spy_proc.communicate(timeout=seconds + 60)
        if spy_proc.returncode != 0:
            log(f"  py-spy failed: {err.decode()[-300:]}")
            return []
    return hot_spots(raw)


IDLE_LEAVES = {
    "asyncio/runners.py:Runner.run",
    "threading.py:Condition.wait",
    "threading.py:Event.wait",
    "asyncio/base_events.py:BaseEventLoop.run_forever",
    "selectors.py:EpollSelector.select",
}
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def short(path: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def hot_spots(raw: Path) -> list[tuple[str, float, float]]:
    """(file:function, inclusive share, self share) from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    busy = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        names = []
        for frame in stack.split(";"):
            match = FRAME.match(frame.strip())
            names.append(f"{short(match['file'])}:{match['func']}" if match else frame.strip())
        if not names or names[-1] in IDLE_LEAVES:
            continue  # a waiting event loop or thread-pool worker: not work
        busy += count
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count
    if not busy:
        return []
    return [(name, inclusive[name] / busy, own[name] / busy) for name in inclusive]


def top(
    spots: list[tuple[str, float, float]], n: int, *, by_self: bool = False, app_only: bool = False
) -> list[tuple[str, float, float]]:
    chosen = [s for s in spots if not app_only or s[0].startswith("app/")]
    return sorted(chosen, key=lambda s: s[2] if by_self else s[1], reverse=True)[:n]


# ------------------------------------------------------------------------------------------ phases
@dataclass
class DbResults:
    database: str
    echo: WrkResult | None = None
    floor: WrkResult | None = None
    qr: WrkResult | None = None
    qr_serial: WrkResult | None = None
    qr_half: WrkResult | None = None  # half the connections: how the rate depends on concurrency
    qr_two_workers: WrkResult | None = None  # PostgreSQL: two uvicorn workers
    qr_ungrouped: WrkResult | None = None  # COCM_GROUP_COMMIT_LIMIT=1: what group commit buys
    mixed: MixedResult | None = None  # POSTs while the billing month and the registry are read
    bundle: WrkResult | None = None
    loads: dict[int, LoadResult] = field(default_factory=dict)
    billing: dict[int, WalkResult] = field(default_factory=dict)
    billing_default: dict[int, WalkResult] = field(default_factory=dict)
    registry: dict[int, WalkResult] = field(default_factory=dict)
    csv: dict[int, CsvResult] = field(default_factory=dict)
    profiles: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)


def run_database(kind: str, args: argparse.Namespace, workdir: Path, spy: str | None) -> DbResults:
    res = DbResults(kind)
    qr_file, bundle_file = workdir / "phq9.json", workdir / "bundle250.json"
    bundle_file.write_bytes(json.dumps(payloads.throughput_bundle(args.bundle_size)).encode())
    log(f"{kind}: baselines (bare echo, validation floor)")
    with Server("benchmarks.baseline_apps:app", server_env("sqlite://"), workdir, "baseline") as base:
        qr_file.write_bytes(json.dumps(payloads.phq9_response("Patient/placeholder")).encode())
        res.echo = wrk_measured(base.url("/echo"), qr_file, args, args.connections, "echo")
        res.floor = wrk_measured(base.url("/validate"), qr_file, args, args.connections, "validation floor")

    log(f"{kind}: POST /fhir/QuestionnaireResponse and 250-entry transaction Bundles (fresh database)")
    with (
        fresh_database(kind, args.postgres_url, workdir) as url,
        Server("app.main:app", server_env(url), workdir, f"app-{kind}") as app,
    ):
        patient = post_json(app, "/fhir/Patient", {"resourceType": "Patient", "name": [{"family": "Bench"}]})
        qr_file.write_bytes(json.dumps(payloads.phq9_response(f"Patient/{patient['id']}")).encode())
        status, body = app.request("POST", "/fhir/QuestionnaireResponse", qr_file.read_bytes())
        if status != 201:
            raise RuntimeError(f"the PHQ-9 POST answered {status}: {body[:300]!r}")
        serial_args = argparse.Namespace(**{**vars(args), "duration": args.duration / 2})
        res.qr_serial = wrk_measured(
            app.url("/fhir/QuestionnaireResponse"), qr_file, serial_args, 1, "POST QR, 1 connection"
        )
        res.qr_half = wrk_measured(
            app.url("/fhir/QuestionnaireResponse"),
            qr_file,
            args,
            args.connections // 2,
            "POST QR, half the connections",
        )
        res.qr = wrk_measured(
            app.url("/fhir/QuestionnaireResponse"), qr_file, args, args.connections, "POST QR"
        )
        if spy and args.profile:
            log(f"{kind}: profiling POST QuestionnaireResponse with py-spy")
            url_qr = app.url("/fhir/QuestionnaireResponse")
            res.profiles["post-qr"] = profile(
                spy,
                app.pid,
                args.profile_seconds,
                f"{kind}-post-qr",
                lambda: wrk(url_qr, qr_file, args.profile_seconds, 1) and None,
            )
        time.sleep(2)  # let queued requests finish
        res.bundle = wrk_measured(app.url("/fhir"), bundle_file, args, args.bundle_connections, "POST Bundle")

    log(f"{kind}: POST /fhir/QuestionnaireResponse without group commit (fresh database)")
    with (
        fresh_database(kind, args.postgres_url, workdir) as url,
        Server(
            "app.main:app", {**server_env(url), "COCM_GROUP_COMMIT_LIMIT": "1"}, workdir, f"app1-{kind}"
        ) as app,
    ):
        patient = post_json(app, "/fhir/Patient", {"resourceType": "Patient", "name": [{"family": "Bench"}]})
        qr_file.write_bytes(json.dumps(payloads.phq9_response(f"Patient/{patient['id']}")).encode())
        res.qr_ungrouped = wrk_measured(
            app.url("/fhir/QuestionnaireResponse"),
            qr_file,
            args,
            args.connections,
            "POST QR, no group commit",
        )

    if kind == "postgresql":
        log(f"{kind}: POST /fhir/QuestionnaireResponse on two uvicorn workers (fresh database)")
        with (
            fresh_database(kind, args.postgres_url, workdir) as url,
            Server("app.main:app", server_env(url), workdir, f"app2-{kind}", workers=2) as app,
        ):
            patient = post_json(
                app, "/fhir/Patient", {"resourceType": "Patient", "name": [{"family": "Bench"}]}
            )
            qr_file.write_bytes(json.dumps(payloads.phq9_response(f"Patient/{patient['id']}")).encode())
            res.qr_two_workers = wrk_measured(
                app.url("/fhir/QuestionnaireResponse"), qr_file, args, args.connections, "POST QR, 2 workers"
            )

    log(f"{kind}: registry and billing data (fresh database, loaded through POST /fhir)")
    with (
        fresh_database(kind, args.postgres_url, workdir) as url,
        Server("app.main:app", server_env(url), workdir, f"data-{kind}") as app,
    ):
        loaded = 0
        for size in args.sizes:
            res.loads[size] = load(app, loaded, size - loaded)
            loaded_at = time.monotonic()
            loaded = size
            log(f"  loaded {size} patients: {res.loads[size].rps:,.0f} resources/s")
            if kind == "postgresql":
                # What autovacuum does within a minute of a bulk load: the walks measure the plans
                # of a database with statistics, not the first minute after the load.
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("ANALYZE")
            res.csv[size] = csv_export(app)  # restarts the server: a fresh peak RSS
            log(f"  billing.csv at {size}: peak RSS {res.csv[size].hwm_after_kib / 1024:.0f} MiB")
            if size > max(args.timed_sizes):
                continue
            billing_path = f"/api/v1/billing?month={payloads.BILLED_MONTH}"
            registry_path = f"/api/v1/registry?as_of={payloads.REGISTRY_AS_OF}"
            res.billing[size] = timed_walk(app, billing_path, 500, args.runs)
            if size == min(args.timed_sizes):
                res.billing_default[size] = timed_walk(app, billing_path, 100, 1)
            res.registry[size] = timed_walk(app, registry_path, 500, args.runs)
            b, r = res.billing[size], res.registry[size]
            log(
                f"  {size}: billing {b.median_s:.3f} s ({b.items} items, {b.pages} pages), registry {r.median_s:.3f} s ({r.items} items)"
            )
            if b.items != size or r.items != size:
                raise RuntimeError(
                    f"expected {size} patients billed and in the registry, got {b.items}/{r.items}"
                )
            if size == max(args.timed_sizes):
                log(f"{kind}: mixed run at {size} patients (POSTs while billing and registry pages are read)")
                # A clinic's data is not all written in the last seconds: wait out the cache's
                # look-back for late commits (COCM_CACHE_REFRESH_MARGIN_SECONDS) since the load.
                margin = Settings.model_fields["cache_refresh_margin_seconds"].default
                time.sleep(max(0.0, margin - (time.monotonic() - loaded_at)))
                patient = post_json(
                    app, "/fhir/Patient", {"resourceType": "Patient", "name": [{"family": "Mix"}]}
                )
                mixed_body = workdir / "phq9-mixed.json"
                mixed_body.write_bytes(
                    json.dumps(payloads.phq9_response(f"Patient/{patient['id']}")).encode()
                )
                res.mixed = mixed_run(app, mixed_body, [billing_path, registry_path], args)
                m = res.mixed
                log(
                    f"  mixed: POST {m.post.row()}; pages p50 {m.page_p50_ms:.1f} ms, p99 {m.page_p99_ms:.1f} ms ({m.pages} pages)"
                )
            if spy and args.profile and size == max(args.timed_sizes):
                log(f"{kind}: profiling the month billing walk with py-spy")
                res.profiles["billing"] = profile(
                    spy,
                    app.pid,
                    args.profile_seconds,
                    f"{kind}-billing",
                    lambda path=billing_path: walk(app, path, 500) and None,
                )
    return res


# ----------------------------------------------------------------------------------------- report
def verdict(ok: bool) -> str:
    return "**met**" if ok else "**MISSED**"


def absolute_verdict(here: bool, normalised: bool) -> str:
    """An absolute target is read twice: on this machine, and normalised to the issue's reference
    machine by the validation floor (the issue asks for every figure relative to the baselines)."""
    if here == normalised:
        return verdict(here)
    return f"{verdict(here)} here; {verdict(normalised)} normalised"


def report(results: list[DbResults], info: dict[str, str], args: argparse.Namespace, elapsed: float) -> str:
    lines = [
        "# Benchmark results",
        "",
        "Generated by `make bench` (`benchmarks/run.py`); see `benchmarks/README.md` for the method.",
        "",
        "## Machine and run",
        "",
        f"- date: {info['date']}; whole run {elapsed / 60:.1f} min",
        f"- CPU: {info['cores']} cores, {info['cpu']}; memory {info['memory']}; {info['os']}",
        f"- Python {info['python']}; {info['packages']}; load tool {info['wrk']}",
        f"- uvicorn, 1 worker, 127.0.0.1, access log off (service and baselines alike); wrk -t1, "
        f"{args.connections} connections (Bundles: {args.bundle_connections}), {args.warmup:.0f} s warm-up "
        f"then {args.duration:.0f} s measured",
        f"- databases: {', '.join(r.database for r in results)} (each phase on a fresh, migrated database)",
        "",
    ]
    for r in results:
        assert r.echo and r.floor and r.qr and r.bundle
        bundle_rps = r.bundle.rps * args.bundle_size
        scale = REFERENCE_FLOOR_RPS / r.floor.rps  # >1: this run's machine was slower than the reference
        lines += [
            f"## {r.database}",
            "",
            "### Baselines and writes (wrk)",
            "",
            "| endpoint | req/s | p50 ms | p99 ms | max ms | vs validation floor | vs bare echo |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for label, w in (
            ("(a) bare FastAPI echo", r.echo),
            ("(b) validation floor (R4B model_validate_json)", r.floor),
            (f"POST /fhir/QuestionnaireResponse (PHQ-9), {args.connections} connections", r.qr),
            (
                f"POST /fhir/QuestionnaireResponse (PHQ-9), {max(1, args.connections // 2)} connections",
                r.qr_half,
            ),
            ("POST /fhir/QuestionnaireResponse (PHQ-9), 1 connection", r.qr_serial),
            (
                f"POST /fhir/QuestionnaireResponse (PHQ-9), {args.connections} connections, group commit off",
                r.qr_ungrouped,
            ),
            (
                f"POST /fhir/QuestionnaireResponse (PHQ-9), {args.connections} connections, 2 workers",
                r.qr_two_workers,
            ),
        ):
            if w is None:
                continue
            lines.append(
                f"| {label} | {w.rps:,.0f} | {w.p50_ms:.1f} | {w.p99_ms:.1f} | {w.max_ms:.1f} | "
                f"{w.rps / r.floor.rps:.2f}x | {w.rps / r.echo.rps:.2f}x |"
            )
        lines.append(
            f"| POST /fhir transaction, {args.bundle_size} entries | {r.bundle.rps:,.2f} "
            f"(= {bundle_rps:,.0f} resources/s) | {r.bundle.p50_ms:.0f} | {r.bundle.p99_ms:.0f} | "
            f"{r.bundle.max_ms:.0f} | {bundle_rps / r.floor.rps:.2f}x (resources/s per floor req/s) | |"
        )
        if r.mixed is not None:
            m = r.mixed
            lines += [
                "",
                f"Mixed run at {max(r.billing):,} patients: POST {m.post.rps:,.0f} req/s, p50 {m.post.p50_ms:.1f} ms, "
                f"p99 {m.post.p99_ms:.1f} ms ({args.connections} connections; alone above: p99 {r.qr.p99_ms:.1f} ms) "
                f"while one client read billing and registry pages (limit 100) over and over: {m.pages} pages, "
                f"p50 {m.page_p50_ms:.1f} ms, p99 {m.page_p99_ms:.1f} ms (each write changes the data the pages "
                "are computed from).",
            ]
        if r.qr_ungrouped is not None:
            lines += [
                "",
                f"Group commit buys {r.qr.rps / r.qr_ungrouped.rps:.2f}x the POST rate of the same server with "
                f"`COCM_GROUP_COMMIT_LIMIT=1` (p99 {r.qr.p99_ms:.1f} vs {r.qr_ungrouped.p99_ms:.1f} ms).",
            ]
        if r.qr_two_workers is not None:
            lines += [
                "",
                f"Two uvicorn workers: {r.qr_two_workers.rps / r.qr.rps:.2f}x one worker's POST rate "
                f"({r.qr_two_workers.rps:,.0f} vs {r.qr.rps:,.0f} req/s), on {info['cores']} cores shared with "
                "PostgreSQL and wrk.",
            ]
        lines += [
            "",
            f"Baselines vs the issue's reference machine: echo {r.echo.rps / REFERENCE_ECHO_RPS:.2f}x of "
            f"{REFERENCE_ECHO_RPS:,}, floor {r.floor.rps / REFERENCE_FLOOR_RPS:.2f}x of {REFERENCE_FLOOR_RPS}. "
            f"Absolute figures below are also shown *normalised* (multiplied by floor speed: "
            f"x{1 / scale:.2f}) so that runs on a faster or slower machine compare.",
            "",
            "### Billing, registry, CSV (data loaded through POST /fhir)",
            "",
            "| patients | load resources/s | billing all pages (limit 500) | billing (limit 100) | registry all pages (limit 500) | CSV rows | CSV time | peak RSS before CSV | peak RSS after CSV |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for size in sorted(r.loads):
            b, bd, g, c = r.billing.get(size), r.billing_default.get(size), r.registry.get(size), r.csv[size]
            lines.append(
                f"| {size:,} | {r.loads[size].rps:,.0f} | "
                + (f"{b.median_s:.3f} s ({b.pages} pages, {b.runs} runs) | " if b else "- | ")
                + (f"{bd.median_s:.3f} s ({bd.pages} pages) | " if bd else "- | ")
                + (f"{g.median_s:.3f} s ({g.pages} pages, {g.runs} runs) | " if g else "- | ")
                + f"{c.rows:,} | {c.seconds:.2f} s | {c.hwm_before_kib / 1024:.0f} MiB | {c.hwm_after_kib / 1024:.0f} MiB |"
            )
        small, large = min(r.billing), max(r.billing)
        b1, b4 = r.billing[small], r.billing[large]
        g1, g4 = r.registry[small], r.registry[large]
        qr_ratio = r.qr.rps / r.floor.rps
        csv_small, csv_large = r.csv[min(r.csv)], r.csv[max(r.csv)]
        lines += [
            "",
            f"Times are the median of up to {args.runs} walks (fewer once 20 s are spent; see the log) "
            "after a one-page warm-up; page requests are sequential over one keep-alive connection, "
            "limit=500 (the maximum page size). Loading: 4 concurrent clients, transactions of 31 "
            "patients (248 entries).",
            "",
            "### Targets",
            "",
            "| target | measured | verdict |",
            "| --- | --- | --- |",
            f"| POST QuestionnaireResponse >= {TARGET_QR_VS_FLOOR}x validation floor | {qr_ratio:.2f}x "
            f"({r.qr.rps:,.0f} vs {r.floor.rps:,.0f} req/s; {r.qr.rps / r.echo.rps:.2f}x bare echo; "
            f"p99 {r.qr.p99_ms:.1f} ms) | {verdict(qr_ratio >= TARGET_QR_VS_FLOOR)} |",
            f"| this step (issue 14): >= {STEP_QR_VS_FLOOR[r.database]}x | {qr_ratio:.2f}x | "
            f"{verdict(qr_ratio >= STEP_QR_VS_FLOOR[r.database])} |",
            f"| 250-entry transactions >= {TARGET_BUNDLE_RPS:,} resources/s | {bundle_rps:,.0f} resources/s "
            f"(normalised {bundle_rps * scale:,.0f}) | "
            f"{absolute_verdict(bundle_rps >= TARGET_BUNDLE_RPS, bundle_rps * scale >= TARGET_BUNDLE_RPS)} |",
            f"| month billing, {small:,} patients, all pages <= {TARGET_BILLING_1K_S:.0f} s | {b1.median_s:.3f} s "
            f"(normalised {b1.median_s / scale:.3f} s) | "
            f"{absolute_verdict(b1.median_s <= TARGET_BILLING_1K_S, b1.median_s / scale <= TARGET_BILLING_1K_S)} |",
            f"| month billing, {large:,} patients <= {TARGET_SCALE_4K}x of {small:,} | "
            f"{b4.median_s / b1.median_s:.2f}x ({b4.median_s:.3f} s) | "
            f"{verdict(b4.median_s <= TARGET_SCALE_4K * b1.median_s)} |",
            f"| registry, {small:,} patients, all pages <= {TARGET_BILLING_1K_S:.0f} s | {g1.median_s:.3f} s "
            f"(normalised {g1.median_s / scale:.3f} s) | "
            f"{absolute_verdict(g1.median_s <= TARGET_BILLING_1K_S, g1.median_s / scale <= TARGET_BILLING_1K_S)} |",
            f"| registry, {large:,} patients <= {TARGET_SCALE_4K}x of {small:,} | "
            f"{g4.median_s / g1.median_s:.2f}x ({g4.median_s:.3f} s) | "
            f"{verdict(g4.median_s <= TARGET_SCALE_4K * g1.median_s)} |",
            f"| billing.csv peak RSS reported at {min(r.csv):,} and {max(r.csv):,} patients | "
            f"{csv_small.hwm_after_kib / 1024:.0f} MiB and {csv_large.hwm_after_kib / 1024:.0f} MiB "
            f"(+{(csv_small.hwm_after_kib - csv_small.hwm_before_kib) / 1024:.0f} and "
            f"+{(csv_large.hwm_after_kib - csv_large.hwm_before_kib) / 1024:.0f} MiB over the idle server) | reported |",
            "",
        ]
    lines += ["## Profile (py-spy, sampling the uvicorn process under load)", ""]
    profiled = [(r.database, name, spots) for r in results for name, spots in r.profiles.items() if spots]
    if not profiled:
        lines += ["Not profiled in this run (`--no-profile`, or py-spy unavailable).", ""]
    for database, name, spots in profiled:
        what = {
            "post-qr": "POST /fhir/QuestionnaireResponse under wrk (1 connection)",
            "billing": "month billing walk (all pages)",
        }[name]
        lines += [
            f"### {database}: {what}",
            "",
            f"Flamegraph: `benchmarks/profiles/{database}-{name}.svg` (not committed). Share of the "
            "non-idle samples; inclusive = the function and what it calls.",
            "",
            "| app function (inclusive) | share | | hottest leaf functions (self) | share |",
            "| --- | ---: | --- | --- | ---: |",
        ]
        incl, own = top(spots, 12, app_only=True), top(spots, 12, by_self=True)
        for i in range(max(len(incl), len(own))):
            left = f"`{incl[i][0]}` | {incl[i][1]:.0%}" if i < len(incl) else " | "
            right = f"`{own[i][0]}` | {own[i][2]:.0%}" if i < len(own) else " | "
            lines.append(f"| {left} | | {right} |")
        lines.append("")
    previous = args.output.read_text() if args.output.exists() else ""
    kept = (
        previous.split(ANALYSIS_START, 1)[1].split(ANALYSIS_END, 1)[0]
        if ANALYSIS_START in previous
        else ("\n_No analysis written yet._\n")
    )
    others = previous.split(ANALYSIS_END, 1)[1].lstrip("\n") if ANALYSIS_END in previous else ""
    lines += ["## Analysis", "", ANALYSIS_START + kept + ANALYSIS_END, ""]
    return "\n".join(lines) + ("\n" + others if others else "")  # the other benchmarks' sections stay


def database_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes: which databases, and PostgreSQL's admin connection."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("COCM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="an admin connection; the run creates and drops cocm_bench_<random> there",
    )
    return parser


def main() -> None:
    parser = database_arguments(__doc__)
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per wrk run")
    parser.add_argument(
        "--warmup", type=float, default=3, help="seconds of wrk warm-up before each measured run"
    )
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk connections (issue 14 measures with -c16)"
    )
    parser.add_argument("--bundle-connections", type=int, default=2)
    parser.add_argument("--bundle-size", type=int, default=250)
    parser.add_argument(
        "--sizes", default="1000,4000,10000", help="patients loaded, cumulative (CSV RSS at each)"
    )
    parser.add_argument(
        "--timed-sizes", default="1000,4000", help="sizes at which billing and registry are timed"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed page walks per size (median)")
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="py-spy profiles (first database only)",
    )
    parser.add_argument("--profile-seconds", type=float, default=10)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 3 s measurements, 100/400 patients"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.warmup, args.runs, args.profile_seconds = 3, 1, 1, 3
        args.sizes, args.timed_sizes = "100,400,1000", "100,400"
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.timed_sizes = [int(s) for s in args.timed_sizes.split(",")]
    if len(args.timed_sizes) < 2 or any(s not in args.sizes for s in args.timed_sizes):
        parser.error("--timed-sizes needs two sizes, both in --sizes")

    ensure_wrk()
    spy = py_spy() if args.profile else None
    started = time.monotonic()
    info = machine()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = []
    with tempfile.TemporaryDirectory(prefix="cocm-bench-") as tmp:
        for index, kind in enumerate(kinds):
            args_for = argparse.Namespace(**{**vars(args), "profile": args.profile and index == 0})
            results.append(run_database(kind, args_for, Path(tmp), spy))
    text = report(results, info, args, time.monotonic() - started)
    args.output.write_text(text)
    log(f"wrote {args.output} in {(time.monotonic() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
