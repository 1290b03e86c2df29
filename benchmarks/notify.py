"""``make bench-notify``: how long a safety alert takes from the commit to the receiver
(notifications.md: within 5 seconds at the median on an idle server).

``cocm serve`` (one worker, default settings but the allowed receiver host) on a fresh database,
a rest-hook receiver in this process, one active subscription; then N PHQ-9 responses with item 9
answered, one at a time. Latency = the receiver's arrival time minus the moment the POST was sent
(an upper bound on commit-to-delivery). Baseline in the same run: a POST of the same notification
size straight to the receiver (what the network and the receiver cost alone). The section between
the ``notify`` markers of RESULTS.md is replaced.

    .venv/bin/python benchmarks/notify.py --database sqlite   # or postgresql, both
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import BIN, RESULTS, free_port, fresh_database, server_env  # noqa: E402

START, END = "<!-- notify -->", "<!-- /notify -->"
ITEM9 = "LA6570-1"  # "more than half the days"
ANSWERS = ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]
PHQ9_ITEMS = [
    "44250-9",
    "44255-8",
    "44259-0",
    "44254-1",
    "44251-7",
    "44258-2",
    "44252-5",
    "44253-3",
    "44260-8",
]


class Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, object]]] = []
        self.event = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                arrived = time.perf_counter()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with outer.event:
                    outer.arrivals.append((arrived, body))
                    outer.event.notify_all()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 30) -> float:
        with self.event:
            if not self.event.wait_for(lambda: len(self.arrivals) >= count, timeout):
                raise SystemExit(
                    f"the receiver got {len(self.arrivals)} of {count} notifications in {timeout} s"
                )
            return self.arrivals[count - 1][0]


def response(pid: str, n: int) -> dict[str, object]:
    answers = [ANSWERS[1]] * 8 + [ITEM9]
    return {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "authored": f"2026-01-05T10:{n // 60:02d}:{n % 60:02d}Z",
        "item": [
            {"linkId": link, "answer": [{"valueCoding": {"system": "http://loinc.org", "code": code}}]}
            for link, code in zip(PHQ9_ITEMS, answers, strict=True)
        ],
    }


@contextmanager
def serve(url: str, port: int, receiver_host: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**server_env(url), "COCM_SUBSCRIPTION_ALLOWED_HOSTS": receiver_host}
    process = subprocess.Popen(
        [str(BIN / "cocm"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        process.wait(20)


def measure(kind: str, admin_url: str, count: int, workdir: Path) -> dict[str, float]:
    receiver = Receiver()
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    headers = {"Content-Type": "application/fhir+json"}
    with (
        fresh_database(kind, admin_url, workdir) as url,
        serve(url, port, "127.0.0.1"),
        httpx.Client(timeout=30) as client,
    ):
        pid = client.post(f"{base}/Patient", json={"resourceType": "Patient"}, headers=headers).json()["id"]
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "benchmark",
            "criteria": "http://cocm-api.org/fhir/SubscriptionTopic/safety-risk",
            "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
        }
        assert client.post(f"{base}/Subscription", json=subscription, headers=headers).status_code == 201
        receiver.wait(1)  # the handshake
        latencies = []
        for n in range(count):
            sent = time.perf_counter()
            assert (
                client.post(
                    f"{base}/QuestionnaireResponse", json=response(pid, n), headers=headers
                ).status_code
                == 201
            )
            latencies.append(receiver.wait(n + 2) - sent)
            time.sleep(0.2)  # idle between alerts
        body = json.dumps(receiver.arrivals[-1][1]).encode()
        direct = []
        for _ in range(count):
            sent = time.perf_counter()
            client.post(receiver.url, content=body, headers=headers)
            direct.append(time.perf_counter() - sent)
    receiver.server.shutdown()
    return {
        "median": statistics.median(latencies),
        "p95": statistics.quantiles(latencies, n=20)[-1],
        "max": max(latencies),
        "direct": statistics.median(direct),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--count", type=int, default=40)
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    rows = []
    for kind in kinds:
        found = measure(kind, args.admin_url, args.count, HERE)
        rows.append(
            f"| {kind} | {args.count} | {found['median'] * 1000:.0f} ms | {found['p95'] * 1000:.0f} ms | "
            f"{found['max'] * 1000:.0f} ms | {found['direct'] * 1000:.1f} ms | {found['median'] / found['direct']:.0f}x | "
            f"{'met' if found['median'] < 5 else 'NOT met'} |"
        )
    section = "\n".join(
        [
            START,
            "## Notifications: commit to receiver (`benchmarks/notify.py`)",
            "",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; Python {platform.python_version()}",
            "- `cocm serve`, one worker, default `COCM_NOTIFY_POLL_SECONDS` (0.5 s); one active safety-risk "
            "subscription (id-only); PHQ-9s with item 9 posted one at a time, 0.2 s apart",
            "- latency = receiver arrival - POST sent; baseline = the same notification POSTed straight to "
            "the receiver in the same run",
            "",
            "| database | alerts | median | p95 | max | baseline (direct POST) | median vs baseline | target: median < 5 s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            *rows,
            END,
        ]
    )
    text = RESULTS.read_text()
    if START in text:
        text = text.split(START, 1)[0] + section + text.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)
    print(section)


if __name__ == "__main__":
    main()
