"""The benchmark's shared state (``Context``), its child processes (``run_child``) and a real uvicorn server (``Server``)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import CHILD_TAG, free_port, log, proc_status


class Context:
    """What the sections share: options, temp folder, the seed index, a running server."""

    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.args = args
        self.tmp = tmp
        self.corpus_dir: Path = args.corpus_dir
        self.index_dir: Path | None = args.index_dir
        self.seed_build: dict | None = None
        self.server: Server | None = None
        self.service = None
        self.timings: dict[str, list[dict]] = {}

    def settings(self, **overrides):
        from assistant.config import Settings

        values = dict(
            corpus_dir=self.corpus_dir,
            index_dir=self.index_dir,
            embedder=self.args.embedder,
            embed_threads=self.args.embed_threads,
            answer_mode="extractive",
            llm_base_url=None,
            api_key=None,
        )
        values.update({k.lower(): v for k, v in self.args.setting})
        values.update(overrides)
        return Settings(_env_file=None, **values)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment for child processes: no inherited ASSISTANT_* settings, ours instead."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
        env.update(
            ASSISTANT_CORPUS_DIR=str(self.corpus_dir.resolve()),
            ASSISTANT_EMBEDDER=self.args.embedder,
            ASSISTANT_ANSWER_MODE="extractive",
        )
        if self.index_dir is not None:
            env["ASSISTANT_INDEX_DIR"] = str(self.index_dir.resolve())
        if self.args.embed_threads:
            env["ASSISTANT_EMBED_THREADS"] = str(self.args.embed_threads)
        env.update({f"ASSISTANT_{k.upper()}": v for k, v in self.args.setting})
        env.update(extra)
        return env

    def ensure_index(self) -> Path:
        """The seed index: the one given, or built once here (in a child, so it is also measured)."""
        if self.index_dir is None:
            self.index_dir = self.tmp / "seed-index"
            log(f"building the seed index of {self.corpus_dir} with {self.args.embedder} (child process)")
            self.seed_build = run_child(
                self,
                "index",
                {"corpus_dir": str(self.corpus_dir), "index_dir": str(self.index_dir), "embedder": self.args.embedder},
            )
        return self.index_dir

    def open_service(self):
        if self.service is None:
            from assistant.service import open_service

            self.ensure_index()
            self.service = open_service(self.settings(), build=False)
        return self.service


def run_child(ctx: Context, kind: str, spec: dict, timeout: float = 7200) -> dict:
    """Run ``python -m benchmarks.speed _child KIND SPEC`` and return the JSON it reports."""
    spec = {**spec, "embed_threads": ctx.args.embed_threads}
    started_wall = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.speed", "_child", kind, json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ctx.tmp,
        env=ctx.env(),
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(CHILD_TAG):
            result = json.loads(line[len(CHILD_TAG) :])
            result["interpreter_start_s"] = round(result.pop("started_wall") - started_wall, 3)
            return result
    raise RuntimeError(f"child {kind} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


class Server:
    """``python -m uvicorn assistant.server.app:create_app --factory`` on a free port of 127.0.0.1."""

    def __init__(self, ctx: Context):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.started = time.perf_counter()
        self.log = (ctx.tmp / f"uvicorn-{self.port}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "assistant.server.app:create_app", "--factory"]
            + ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=ctx.tmp,
            env=ctx.env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_first_answer(self, question: str, timeout: float = 300) -> tuple[float, float]:
        """Poll POST /ask until it answers 200: (seconds since process start, that request's seconds)."""
        import httpx

        deadline = self.started + timeout
        with httpx.Client(timeout=120) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"uvicorn exited with {self.proc.returncode}; see {self.log.name}")
                t = time.perf_counter()
                try:
                    r = client.post(f"{self.url}/ask", json={"question": question, "mode": "extractive"})
                    if r.status_code == 200:
                        now = time.perf_counter()
                        return now - self.started, now - t
                    if r.status_code != 503:
                        raise RuntimeError(f"/ask answered {r.status_code}: {r.text[:300]}")
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"no answer from {self.url} within {timeout} s")

    def memory(self) -> dict[str, float]:
        return proc_status(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
