"""Starting, probing and stopping the local cloud's processes (emulators, functions, local APIs)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port() -> int:
    """A port nothing listens on now, and never one this process handed out before: a stack asks for ten ports
    before its servers bind them, and the kernel may offer a port again once the probing socket is closed (two
    functions were once given the same port; the one that lost could not bind, and the winner answered its health
    check)."""
    with _HANDED_OUT_LOCK:
        while True:
            with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port


def require(binary: str, hint: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"`{binary}` is not on PATH: {hint}")
    return path


def spawn(args: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start a process in its own process group (so stopping it stops its children: the emulators fork Java)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop(pid: int, *, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)


def wait_http(url: str, *, timeout: float, pid: int | None = None, log_path: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if pid is not None and not alive(pid):
            tail = log_path.read_text(errors="replace")[-2000:] if log_path and log_path.exists() else ""
            raise RuntimeError(f"process {pid} serving {url} exited during start-up\n{tail}")
        try:
            response = requests.get(url, timeout=2)
            if response.status_code < 500:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last})")


def start_firestore_emulator(port: int, log_path: Path) -> int:
    gcloud = require("gcloud", "install the Google Cloud CLI with the cloud-firestore-emulator component")
    pid = spawn([gcloud, "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}", "--quiet"],
                log_path=log_path)
    wait_http(f"http://127.0.0.1:{port}/", timeout=90, pid=pid, log_path=log_path)
    return pid


def start_pubsub_emulator(port: int, project: str, log_path: Path, data_dir: Path) -> int:
    gcloud = require("gcloud", "install the Google Cloud CLI with the pubsub-emulator component")
    data_dir.mkdir(parents=True, exist_ok=True)
    pid = spawn([gcloud, "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}",
                 f"--project={project}", f"--data-dir={data_dir}", "--quiet"], log_path=log_path)
    wait_http(f"http://127.0.0.1:{port}/v1/projects/{project}/topics", timeout=90, pid=pid, log_path=log_path)
    return pid


def reset_firestore_emulator(host: str, project: str) -> None:
    """Delete every document (the emulator's own endpoint); for tests that need a clean database."""
    requests.delete(f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents", timeout=10).raise_for_status()
