"""Soak test: a real uvicorn server under 32 concurrent clients for SOAK_SECONDS.

Starts ``assistant.server.app:create_app`` with uvicorn on 127.0.0.1 over the session's real index
(the seed corpus, default embedder), then 32 asyncio clients mix ``POST /ask`` and
``POST /ask/stream`` (read to the ``done`` event) with English, French and Russian questions.
The server's resident memory (VmRSS) is sampled every second.

Passes when every request succeeded (200 with a valid body; every stream ends in ``done``),
the server is still healthy afterwards, and RSS grew by at most ``MAX_RSS_GROWTH`` over the
second half of the run. The figures are printed.

Environment: ``SOAK_SECONDS`` (default 20), ``SOAK_CLIENTS`` (default 32).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from assistant.server.app import AskResponse
from tests.servers import Server, uvicorn_server

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SEED_CORPUS = ROOT / "corpus"
SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "20"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "32"))
MAX_RSS_GROWTH = 0.10
STARTUP_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 120

QUESTIONS = [
    "Who finances the Digital Foundations Project in Tajikistan?",
    "What is Switzerland's budget for the Tajikistan Digital Foundations Project?",
    "When did the Tajik delegation visit Georgia to learn about public service delivery?",
    "How does IOM propose to engage the Tajik diaspora?",
    "Which topics did the South-South knowledge exchanges with Tajikistan cover?",
    "What did the Aga Khan Foundation's Civil Society Programme do in Tajikistan?",
    "What is the population of Dushanbe in 2030?",
    "Qui finance le projet Digital Foundations au Tadjikistan ?",
    "Quel est le budget de la Suisse pour le projet Digital Foundations ?",
    "Quand la délégation tadjike s'est-elle rendue en Géorgie ?",
    "Кто финансирует проект цифровых основ в Таджикистане?",
    "Каков бюджет Швейцарии для проекта Digital Foundations?",
    "Когда таджикская делегация посетила Грузию?",
    "Чем занимается Фонд Ага Хана в Таджикистане?",
]


# ---------------------------------------------------------------------------- the server


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


@pytest.fixture
def server(real_index_dir: Path, tmp_path: Path):
    # Only our settings: an ASSISTANT_* variable from the caller (an API key, an LLM endpoint)
    # would change what is being measured. The working folder is empty, so no .env is read.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    env.update(ASSISTANT_INDEX_DIR=str(real_index_dir), ASSISTANT_CORPUS_DIR=str(SEED_CORPUS))
    # Every client's request waits in the admission queue rather than being refused: the soak measures stability.
    env.update(ASSISTANT_ANSWER_QUEUE=str(4 * CLIENTS), ASSISTANT_ANSWER_QUEUE_WAIT_S="120")
    with uvicorn_server(env, cwd=tmp_path, log_path=tmp_path / "server.log", timeout_s=STARTUP_TIMEOUT_S) as server:
        yield server


# ---------------------------------------------------------------------------- the clients


class Tally:
    def __init__(self):
        self.latencies: dict[str, list[float]] = {"/ask": [], "/ask/stream": []}
        self.errors: list[str] = []
        self.abstained = 0


def _check_answer(body: dict, question: str) -> None:
    answer = AskResponse.model_validate(body)
    if not answer.answer.strip():
        raise AssertionError(f"empty answer to {question!r}")
    if not answer.abstained and not answer.citations:
        raise AssertionError(f"answer without citations to {question!r}")


async def _ask(client: httpx.AsyncClient, payload: dict) -> dict:
    response = await client.post("/ask", json=payload)
    if response.status_code != 200:
        raise AssertionError(f"/ask {response.status_code}: {response.text[:300]}")
    return response.json()


async def _ask_stream(client: httpx.AsyncClient, payload: dict) -> dict:
    events: list[tuple[str, str]] = []
    async with client.stream("POST", "/ask/stream", json=payload) as response:
        if response.status_code != 200:
            raise AssertionError(f"/ask/stream {response.status_code}: {(await response.aread())[:300]!r}")
        if not response.headers.get("content-type", "").startswith("text/event-stream"):
            raise AssertionError(f"/ask/stream content-type {response.headers.get('content-type')}")
        name, data = None, []
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and name is not None:
                events.append((name, "\n".join(data)))
                name, data = None, []
    names = [n for n, _ in events]
    if not names or names[-1] != "done" or any(n != "delta" for n in names[:-1]):
        raise AssertionError(f"/ask/stream events {names}: {events[-1][1][:300] if events else ''}")
    return json.loads(events[-1][1])


async def _client_loop(number: int, base_url: str, deadline: float, tally: Tally) -> None:
    rng = random.Random(number)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=10)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
        turn = number
        while time.monotonic() < deadline:
            path = "/ask/stream" if turn % 2 else "/ask"
            turn += 1
            payload: dict = {"question": rng.choice(QUESTIONS)}
            if rng.random() < 0.3:
                payload["top_k"] = rng.choice([1, 3, 8, 20])
            if rng.random() < 0.2:
                payload["mode"] = rng.choice(["auto", "extractive"])
            started = time.perf_counter()
            try:
                body = await (_ask_stream(client, payload) if path == "/ask/stream" else _ask(client, payload))
                _check_answer(body, payload["question"])
                tally.abstained += body["abstained"]
            except Exception as exc:  # every failure is counted, none stops the soak
                tally.errors.append(f"{path} {payload}: {exc.__class__.__name__}: {exc}")
                continue
            tally.latencies[path].append(time.perf_counter() - started)


async def _soak(base_url: str, seconds: float, clients: int) -> Tally:
    tally = Tally()
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_client_loop(n, base_url, deadline, tally) for n in range(clients)))
    return tally


def _sample_rss(pid: int, samples: list[tuple[float, int]], stop: threading.Event, started: float) -> None:
    while not stop.is_set():
        rss = _rss_kib(pid)
        if rss is not None:
            samples.append((time.monotonic() - started, rss))
        stop.wait(1.0)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


# ---------------------------------------------------------------------------- the test


def test_soak(server: Server, capsys: pytest.CaptureFixture):
    pid = server.proc.pid
    # One request of each kind first, so lazy initialisation does not count as growth.
    for path in ("/ask", "/ask/stream"):
        warm = httpx.post(f"{server.base_url}{path}", json={"question": QUESTIONS[0]}, timeout=REQUEST_TIMEOUT_S)
        assert warm.status_code == 200, warm.text[:500]
    rss_idle = _rss_kib(pid)

    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.monotonic()
    sampler = threading.Thread(target=_sample_rss, args=(pid, samples, stop, started), daemon=True)
    sampler.start()
    try:
        tally = asyncio.run(_soak(server.base_url, SOAK_SECONDS, CLIENTS))
    finally:
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join(timeout=5)

    health = httpx.get(f"{server.base_url}/health", timeout=30)
    alive = server.proc.poll() is None
    rss_after = _rss_kib(pid)

    all_latencies = [x for values in tally.latencies.values() for x in values]
    done = len(all_latencies)
    requests = done + len(tally.errors)
    half = SOAK_SECONDS / 2
    second_half = [rss for t, rss in samples if t >= half]
    rss_mid = second_half[0] if second_half else None
    growth = (max(second_half) - rss_mid) / rss_mid if second_half else float("nan")
    rss_values = [rss for _, rss in samples]
    mib = 1024

    lines = [
        f"soak: {SOAK_SECONDS:.0f}s target, {elapsed:.1f}s measured, {CLIENTS} clients, server pid {pid} on {server.base_url}",
        f"  requests {requests} (/ask {len(tally.latencies['/ask'])} ok, /ask/stream {len(tally.latencies['/ask/stream'])} ok), "
        f"errors {len(tally.errors)}, abstained {tally.abstained}",
        f"  throughput {done / elapsed:.1f} req/s",
    ]
    for name, values in (("all", all_latencies), *tally.latencies.items()):
        lines.append(
            f"  latency {name:<11} p50 {_percentile(values, 50) * 1000:7.0f} ms  p95 {_percentile(values, 95) * 1000:7.0f} ms"
            f"  max {max(values, default=float('nan')) * 1000:7.0f} ms"
        )
    if rss_values:
        lines.append(
            f"  RSS idle {rss_idle / mib:.0f} MiB, start {rss_values[0] / mib:.0f} MiB, peak {max(rss_values) / mib:.0f} MiB, "
            f"end {rss_values[-1] / mib:.0f} MiB, after {(rss_after or 0) / mib:.0f} MiB; "
            f"second-half growth {growth * 100:+.1f}% (from {(rss_mid or 0) / mib:.0f} MiB, {len(samples)} samples)"
        )
    with capsys.disabled():
        print("\n" + "\n".join(lines))

    assert alive, f"server died:\n{server.log_tail()}"
    assert health.status_code == 200 and health.json()["status"] == "ok", health.text[:500]
    assert not tally.errors, f"{len(tally.errors)} errors, first ones:\n" + "\n".join(tally.errors[:10]) + f"\n{server.log_tail()}"
    assert tally.latencies["/ask"] and tally.latencies["/ask/stream"], "both endpoints must have been exercised"
    assert len(samples) >= SOAK_SECONDS * 0.8 and second_half, "RSS was not sampled every second"
    assert growth <= MAX_RSS_GROWTH, "RSS grew over the second half: " + ", ".join(f"{t:.0f}s {r // mib} MiB" for t, r in samples)
    assert "Traceback" not in server.log_tail(100_000), server.log_tail()
