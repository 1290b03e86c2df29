"""``make bench-notify``: safety alerts from the commit to the receiver, and what the outbox costs
the write path (notifications.md: delivered within 5 seconds at the median on an idle server).

``cocm serve`` (one worker, defaults but the allowed receiver host) on a fresh database and a
rest-hook receiver in this process. First POST /fhir/QuestionnaireResponse throughput with wrk and
no subscription; then a safety-risk and a measurement-recorded subscription, item-9 responses from
one client at 1 and at 50 writes/s (latency = receiver arrival - POST sent, an upper bound on
commit to receipt), and the wrk run again with every write raising an event. Baseline in the same
run: the same notification POSTed straight to the receiver. The section between the ``notify``
markers of RESULTS.md is replaced.

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
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import payloads  # noqa: E402
from run import BIN, WrkResult, ensure_wrk, free_port, fresh_database, replace_section, server_env, wrk  # noqa: E402

START, END = "<!-- notify -->", "<!-- /notify -->"
HEADERS = {"Content-Type": "application/fhir+json"}
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
        self.alerts: list[float] = []  # arrival times of safety-risk notifications (and handshake)
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
                    topic = body["entry"][0]["resource"]["parameter"][1]["valueCanonical"]
                    if str(topic).endswith("/safety-risk"):
                        outer.alerts.append(arrived)
                    outer.event.notify_all()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 60, *, alerts: bool = False) -> None:
        """Until ``count`` notifications (or safety-risk ones) have arrived."""
        found = self.alerts if alerts else self.arrivals
        with self.event:
            if not self.event.wait_for(lambda: len(found) >= count, timeout):
                raise SystemExit(f"the receiver got {len(found)} of {count} notifications in {timeout} s")


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


@dataclass
class Found:
    latency: dict[float, list[float]]  # writes/s -> commit-to-receipt seconds
    direct: float  # the baseline: one notification POSTed straight to the receiver
    without: WrkResult  # POST throughput, no subscription
    with_subscription: WrkResult  # the same with a subscription receiving every write


def latencies(
    client: httpx.Client, base: str, pid: str, receiver: Receiver, rate: float, count: int
) -> list[float]:
    """``count`` item-9 responses sent at ``rate`` per second by one client; each one's time from
    send to the receiver (events are numbered in commit order, and one client commits in order)."""
    already = len(receiver.alerts)
    sent_at = []
    for n in range(count):
        due = time.perf_counter()
        sent_at.append(due)
        assert (
            client.post(f"{base}/QuestionnaireResponse", json=response(pid, n), headers=HEADERS).status_code
            == 201
        )
        time.sleep(max(0.0, 1 / rate - (time.perf_counter() - due)))
    receiver.wait(already + count, alerts=True)
    return [receiver.alerts[already + n] - sent for n, sent in enumerate(sent_at)]


def measure(kind: str, admin_url: str, args: argparse.Namespace, workdir: Path) -> Found:
    receiver = Receiver()
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    with (
        fresh_database(kind, admin_url, workdir) as url,
        serve(url, port, "127.0.0.1"),
        httpx.Client(timeout=30) as client,
        tempfile.TemporaryDirectory() as scratch,
    ):
        pid = client.post(f"{base}/Patient", json={"resourceType": "Patient"}, headers=HEADERS).json()["id"]
        body = Path(scratch) / "phq9.json"
        body.write_text(json.dumps(payloads.phq9_response(f"Patient/{pid}")))
        wrk(f"{base}/QuestionnaireResponse", body, 3, args.connections)  # warm-up
        without = wrk(f"{base}/QuestionnaireResponse", body, args.duration, args.connections)
        for topic in ("safety-risk", "measurement-recorded"):
            assert (
                client.post(
                    f"{base}/Subscription", json=subscription(topic, receiver.url), headers=HEADERS
                ).status_code
                == 201
            )
        receiver.wait(2)  # the handshakes
        latency = {rate: latencies(client, base, pid, receiver, rate, count) for rate, count in args.rates}
        receiver.wait(
            2 + 2 * sum(count for _, count in args.rates)
        )  # both topics' events delivered: idle again
        with_subscription = wrk(f"{base}/QuestionnaireResponse", body, args.duration, args.connections)
        sample = json.dumps(receiver.arrivals[-1][1]).encode()
        direct = []
        for _ in range(40):
            sent = time.perf_counter()
            client.post(receiver.url, content=sample, headers=HEADERS)
            direct.append(time.perf_counter() - sent)
    receiver.server.shutdown()
    return Found(latency, statistics.median(direct), without, with_subscription)


def subscription(topic: str, endpoint: str) -> dict[str, object]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "benchmark",
        "criteria": f"http://cocm-api.org/fhir/SubscriptionTopic/{topic}",
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json"},
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="sqlite")
    parser.add_argument(
        "--admin-url", default=os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    args.rates = [(1.0, 20), (50.0, 250)]  # writes/s and how many alerts at that pace
    ensure_wrk()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    latency_rows, throughput_rows = [], []
    for kind in kinds:
        found = measure(kind, args.admin_url, args, HERE)
        for rate, values in found.latency.items():
            median = statistics.median(values)
            latency_rows.append(
                f"| {kind} | {rate:g}/s | {len(values)} | {median * 1000:.0f} ms | {percentile(values, 0.99) * 1000:.0f} ms | "
                f"{max(values) * 1000:.0f} ms | {found.direct * 1000:.1f} ms | {'met' if median < 5 else 'NOT met'} |"
            )
        ratio = found.with_subscription.rps / found.without.rps
        throughput_rows.append(
            f"| {kind} | {found.without.rps:,.0f} | {found.with_subscription.rps:,.0f} | {ratio:.2f}x | "
            f"{found.without.p99_ms:.1f} / {found.with_subscription.p99_ms:.1f} ms | {'met' if ratio >= 0.5 else 'NOT met'} |"
        )
    section = "\n".join(
        [
            START,
            "## Notifications (`benchmarks/notify.py`, `make bench-notify`)",
            "",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; Python {platform.python_version()}",
            "- `cocm serve`, one worker, default `COCM_NOTIFY_POLL_SECONDS` (0.5 s), a receiver in the benchmark "
            "process; subscriptions: safety-risk and measurement-recorded (id-only)",
            "- latency = receiver arrival - POST sent (an upper bound on commit to receipt), PHQ-9s with item 9 "
            "sent by one client at the given pace; baseline = the same notification POSTed straight to the receiver",
            f"- throughput: wrk, {args.connections} connections, {args.duration:g} s, POST /fhir/QuestionnaireResponse "
            "(PHQ-9) without a subscription, then with the measurement-recorded subscription receiving every write",
            "",
            "| database | pace | alerts | median | p99 | max | baseline (direct POST) | target: median < 5 s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            *latency_rows,
            "",
            "| database | req/s without | req/s with a subscription | with / without | p99 without / with | target: not halved |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
            *throughput_rows,
            END,
        ]
    )
    replace_section(START, END, section)
    print(section)


if __name__ == "__main__":
    main()
