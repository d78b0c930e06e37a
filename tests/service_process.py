"""Run the real service as a subprocess (`captioner serve`, as the container does).

Unlike the in-thread service of tests/support.py, a subprocess can be killed with SIGKILL
(a crash: nothing in the process gets to clean up) or stopped with SIGTERM (the way a
container runtime stops it), and several of them are separate replicas with separate
event loops, clients and worker ids.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.harness.hf_stub import HuggingFaceStandIn
from tests.harness.supabase_stub import SupabaseStandIn
from tests.support import TEST_SECRET

REPO_ROOT = Path(__file__).resolve().parent.parent

# The same fast settings as tests/support.FAST, as environment variables.
FAST_ENV = {
    "WORKER_POLL_INTERVAL": "0.2",
    "RETRY_BASE_SECONDS": "0.05",
    "RETRY_MAX_SECONDS": "2",
    "LEASE_SECONDS": "5",  # the smallest the settings allow
    "SWEEP_INTERVAL": "0",
    "SHUTDOWN_GRACE_SECONDS": "3",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(
    supabase: SupabaseStandIn, hf: HuggingFaceStandIn, **overrides: Any
) -> dict[str, str]:
    """The environment of a service process talking to the stand-ins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "HF_"))}
    env.update(
        {
            "SUPABASE_URL": supabase.url,
            "SUPABASE_SECRET_KEY": supabase.secret_key,
            "WEBHOOK_SECRET": TEST_SECRET,
            "HF_TOKEN": "hf_test_token",
            "CAPTION_BACKEND": "hf",
            "CAPTION_MODEL": f"{hf.url}/models/blip",
            "HF_ENDPOINT": hf.url,  # the Hub and the router are the stand-in too
            "HF_ROUTER_URL": hf.url,
            "UI_ENABLED": "false",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **FAST_ENV,
        }
    )
    env.update({key.upper(): str(value) for key, value in overrides.items()})
    return env


class ServiceProcess:
    """One service process (`captioner serve`, or another ASGI factory under uvicorn).
    `start()` returns once `ready_path` answers 200."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        port: int | None = None,
        factory: str | None = None,
        ready_path: str = "/readyz",
    ) -> None:
        self.env = dict(env)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.ready_path = ready_path
        self.command = (
            [sys.executable, "-m", "uvicorn", "--factory", factory, "--no-access-log"]
            if factory
            else [sys.executable, "-m", "app.commands.cli", "serve"]
        ) + ["--host", "127.0.0.1", "--port", str(self.port)]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def webhook_url(self) -> str:
        return self.url + "/webhooks/storage"

    def start(self, timeout: float = 20.0) -> ServiceProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"service exited with {self.proc.returncode} before it was ready:\n{self.log}"
                )
            try:
                if httpx.get(self.url + self.ready_path, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"service not ready after {timeout}s:\n{self.log}")
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: a crash, nothing runs after it."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit; returns the exit code (fails on a hang)."""
        assert self.proc is not None
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            message = f"service did not exit {timeout}s after SIGTERM:\n{self.log}"
            raise AssertionError(message) from None

    def stop(self) -> None:
        """Best-effort cleanup: SIGTERM, then SIGKILL if it lingers."""
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def service_processes(
    supabase: SupabaseStandIn, hf: HuggingFaceStandIn, log_dir: Path
) -> Iterator[Any]:
    """A factory `start(**env_overrides) -> ServiceProcess`; every process is stopped after."""
    started: list[ServiceProcess] = []

    def start(*, port: int | None = None, **overrides: Any) -> ServiceProcess:
        env = service_env(supabase, hf, **overrides)
        proc = ServiceProcess(env, log_dir / f"service-{len(started)}.log", port=port)
        started.append(proc)
        return proc.start()

    try:
        yield start
    finally:
        for proc in reversed(started):
            proc.stop()
