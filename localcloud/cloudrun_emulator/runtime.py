"""Serving processes: what runs a revision locally, and how the emulator tells it is ready.

A revision of an image named `…/scann-server:<tag>` runs `python -m scann_server` from `serving_images/` with the
revision's env plus `PORT`. Native TF Serving (`…/tf-serving-native:<tag>`) cannot run here, so a stand-in
(`savedmodel_server.py`) serves those revisions: the SavedModel at `MODEL_PATH`, every signature, through TF
Serving's REST API, as `tensorflow_model_server` would. Both run with the pipeline's interpreter (TensorFlow).
Processes stay in the emulator's process group, so stopping the group (`registrar local down`) stops them too.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent.parent
SERVING_IMAGES = ROOT / "serving_images"
DEFAULT_SERVING_PYTHON = ROOT / ".venv-pipeline" / "bin" / "python"
SERVING_PYTHON_ENV = "REGISTRAR_SERVING_PYTHON"
START_TIMEOUT_ENV = "CLOUD_RUN_EMULATOR_START_TIMEOUT"
DEFAULT_START_TIMEOUT = 240.0
LOG_TAIL_CHARS = 1500

SCANN_IMAGE = "scann-server"
NATIVE_IMAGE = "tf-serving-native"
NATIVE_STANDIN = Path(__file__).resolve().with_name("savedmodel_server.py")
NATIVE_NOTE = ("native TF Serving cannot run locally; a stand-in serves the SavedModel at MODEL_PATH "
               "(its serving_default) with TF Serving's REST API")


class CannotRun(Exception):
    """The revision cannot be started here at all (unknown image, no serving interpreter)."""


def image_kind(image: str) -> str:
    """The image's last path segment without tag or digest: `…/scann-server:v1` → `scann-server`."""
    last = image.rsplit("/", 1)[-1]
    return re.split(r"[:@]", last, maxsplit=1)[0]


def serving_python() -> Path:
    configured = os.environ.get(SERVING_PYTHON_ENV)
    if not configured:
        return DEFAULT_SERVING_PYTHON
    path = Path(configured)
    return path if path.is_absolute() else ROOT / path


def start_timeout() -> float:
    try:
        return float(os.environ.get(START_TIMEOUT_ENV) or DEFAULT_START_TIMEOUT)
    except ValueError:
        return DEFAULT_START_TIMEOUT


def free_port(preferred: int | None = None) -> int:
    if preferred:
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            # like the servers it is for: a port whose old connections linger in TIME_WAIT is free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Launch:
    """How a revision's image runs locally, and the note its Ready condition carries."""

    args: list[str]
    env: dict[str, str]
    note: str = ""


def plan(image: str, env: Mapping[str, str], port: int) -> Launch:
    kind = image_kind(image)
    if kind not in (SCANN_IMAGE, NATIVE_IMAGE):
        raise CannotRun(f"image {image!r} cannot run locally: the local Cloud Run runs `{SCANN_IMAGE}` images (the "
                        f"scann server from serving_images/) and `{NATIVE_IMAGE}` images (a TF Serving stand-in)")
    python = serving_python()
    if not python.exists():
        raise CannotRun(f"the serving interpreter {python} does not exist: run `make pipeline-setup` to create "
                        f"{DEFAULT_SERVING_PYTHON.relative_to(ROOT)}, or point {SERVING_PYTHON_ENV} at a Python "
                        "with TensorFlow")
    if kind == NATIVE_IMAGE:
        return Launch([str(python), str(NATIVE_STANDIN)], {**env, "PORT": str(port), "PYTHONUNBUFFERED": "1"},
                      NATIVE_NOTE)
    pythonpath = os.pathsep.join(p for p in (str(SERVING_IMAGES), env.get("PYTHONPATH", "")) if p)
    launch_env = {**env, "PORT": str(port), "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}
    return Launch([str(python), "-m", "scann_server"], launch_env)


class Instance:
    """One running revision: its process, port and log."""

    def __init__(self, service_id: str, revision: str, port: int, launch: Launch, log_path: Path) -> None:
        self.service_id = service_id
        self.revision = revision
        self.port = port
        self.note = launch.note
        self.model_name = launch.env.get("MODEL_NAME", "")
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} revision {revision} on "
                      f"port {port}: {' '.join(launch.args)}\n".encode())
            log.flush()
            self.log_offset = log.tell()
            # No new session: the serving process stays in the emulator's process group, so a killpg of the
            # emulator (`registrar local down`) reaches it even if the emulator cannot clean up.
            self.process = subprocess.Popen(
                launch.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **launch.env}, cwd=str(ROOT),
            )

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def ready(self) -> bool:
        """The model answers as AVAILABLE (TF Serving's model status), or `/healthz` answers without a model name."""
        try:
            if not self.model_name:
                return requests.get(f"{self.uri}/healthz", timeout=2).status_code == 200
            response = requests.get(f"{self.uri}/v1/models/{self.model_name}", timeout=2)
            if response.status_code != 200:
                return False
            statuses = response.json().get("model_version_status") or []
            return bool(statuses) and statuses[0].get("state") == "AVAILABLE"
        except (requests.RequestException, ValueError, AttributeError):
            return False

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return text[-chars:].strip()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process and what it started, SIGKILL after `timeout`."""
        if not self.alive():
            return
        family = [self.pid, *_descendants(self.pid)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in family:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            try:
                self.process.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)


def _descendants(pid: int) -> list[int]:
    """Child processes (recursively) of `pid`, from /proc; empty where there is no procfs."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.exists():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found
