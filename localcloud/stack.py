"""The local cloud: emulators, one functions-framework process per entry point, topics and push subscriptions.

`up` starts everything in the background from `schemas/topology.json` (the file Terraform's tests read too),
waits until every process answers, and writes `<state_dir>/local.env` and `<state_dir>/processes.json`.
`down` stops exactly the process groups recorded there. `status` says what runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from localcloud import processes
from localcloud.vertex_emulator.activity_log import log_path_for

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGY_PATH = ROOT / "schemas" / "topology.json"
FUNCTIONS_SOURCE = ROOT / "functions" / "main.py"
VERTEX_EMULATOR_MAIN = ROOT / "localcloud" / "vertex_emulator" / "__main__.py"
PROCESSES_FILE = "processes.json"
ENV_FILE = "local.env"
START_TIMEOUT = 90.0
RETRY_BACKOFF = {"minimumBackoff": "1s", "maximumBackoff": "10s"}
ACK_DEADLINE_SECONDS = 60

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------------------------
# Topology


def load_topology(path: Path = TOPOLOGY_PATH) -> dict[str, Any]:
    return json.loads(path.read_text())


def consumers(topology: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(topic name, consumer) for every topic a function consumes."""
    return [(t["name"], t["consumer"]) for t in topology["topics"] if t.get("consumer")]


def http_entry_points(topology: Mapping[str, Any]) -> list[str]:
    return [f["entry_point"] for f in topology.get("http_functions", [])]


# ---------------------------------------------------------------------------------------------------------------
# State files


def processes_path(state_dir: Path) -> Path:
    return Path(state_dir) / PROCESSES_FILE


def env_path(state_dir: Path) -> Path:
    return Path(state_dir) / ENV_FILE


def read_processes(state_dir: Path) -> list[dict[str, Any]]:
    path = processes_path(state_dir)
    if not path.exists():
        return []
    return json.loads(path.read_text()).get("processes", [])


def write_processes(state_dir: Path, records: list[dict[str, Any]]) -> None:
    path = processes_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"processes": records}, indent=2) + "\n")


def read_env(state_dir: Path) -> dict[str, str]:
    path = env_path(state_dir)
    if not path.exists():
        return {}
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            env[name.strip()] = value.strip()
    return env


def write_env(state_dir: Path, env: Mapping[str, str]) -> None:
    env_path(state_dir).write_text("".join(f"{name}={value}\n" for name, value in env.items()))


# ---------------------------------------------------------------------------------------------------------------
# Health


def is_healthy(record: Mapping[str, Any]) -> bool:
    if not processes.alive(int(record["pid"])):
        return False
    try:
        return requests.get(record["health_url"], timeout=2).status_code < 500
    except requests.RequestException:
        return False


def status(state_dir: Path = Path(".registrar")) -> list[dict[str, Any]]:
    """Each recorded process with whether it is alive and answering."""
    return [
        {**record, "alive": processes.alive(int(record["pid"])), "healthy": is_healthy(record)}
        for record in read_processes(state_dir)
    ]


def is_up(state_dir: Path) -> bool:
    records = read_processes(state_dir)
    return bool(records) and env_path(state_dir).exists() and all(is_healthy(r) for r in records)


# ---------------------------------------------------------------------------------------------------------------
# Processes


class _Started:
    """The processes started so far, recorded on disk as each starts (so `down` can stop a half-started stack)."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.records: list[dict[str, Any]] = []

    def add(self, name: str, pid: int, port: int, log: Path, health_url: str) -> dict[str, Any]:
        record = {"name": name, "pid": pid, "port": port, "log": str(log), "health_url": health_url}
        self.records.append(record)
        write_processes(self.state_dir, self.records)
        return record

    def wait_healthy(self, record: Mapping[str, Any], timeout: float = START_TIMEOUT) -> None:
        try:
            processes.wait_http(record["health_url"], timeout=timeout, pid=int(record["pid"]), log_path=Path(record["log"]))
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{record['name']} did not become healthy: {exc}\n--- {record['log']} (tail) ---\n"
                               f"{log_tail(Path(record['log']))}") from exc


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _port(ports: Mapping[str, int] | None, name: str) -> int:
    return int((ports or {}).get(name) or processes.free_port())


def _gcloud() -> str:
    return processes.require("gcloud", "install the Google Cloud CLI with the emulator components")


def spawn_firestore(started: _Started, port: int, logs: Path) -> dict[str, Any]:
    log = logs / "firestore.log"
    pid = processes.spawn([_gcloud(), "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}", "--quiet"],
                          log_path=log)
    return started.add("firestore", pid, port, log, f"http://127.0.0.1:{port}/")


def spawn_pubsub(started: _Started, port: int, project: str, logs: Path, data_dir: Path) -> dict[str, Any]:
    log = logs / "pubsub.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    pid = processes.spawn([_gcloud(), "beta", "emulators", "pubsub", "start", f"--host-port=127.0.0.1:{port}",
                           f"--project={project}", f"--data-dir={data_dir}", "--quiet"], log_path=log)
    return started.add("pubsub", pid, port, log, f"http://127.0.0.1:{port}/v1/projects/{project}/topics")


def functions_framework_binary() -> str:
    beside_python = Path(sys.executable).parent / "functions-framework"
    if beside_python.exists():
        return str(beside_python)
    return processes.require("functions-framework", "pip install functions-framework")


def spawn_function(started: _Started, entry_point: str, signature: str, port: int, env: Mapping[str, str],
                   logs: Path) -> dict[str, Any]:
    log = logs / f"{entry_point}.log"
    pid = processes.spawn(
        [functions_framework_binary(), "--source", str(FUNCTIONS_SOURCE), "--target", entry_point,
         "--signature-type", signature, "--host", "127.0.0.1", "--port", str(port)],
        log_path=log, env=env, cwd=FUNCTIONS_SOURCE.parent,
    )
    health = f"http://127.0.0.1:{port}/healthz" if signature == "http" else f"http://127.0.0.1:{port}/"
    return started.add(entry_point, pid, port, log, health)


def spawn_vertex_emulator(started: _Started, port: int, project: str, region: str, env: Mapping[str, str],
                          state_dir: Path, logs: Path) -> dict[str, Any]:
    log = logs / "vertex.log"
    state = state_dir / "vertex-state.json"
    state.unlink(missing_ok=True)  # the Firestore emulator starts empty, so Vertex does too: they agree at start
    log_path_for(state).unlink(missing_ok=True)
    pid = processes.spawn(
        [sys.executable, "-m", "localcloud.vertex_emulator", "--port", str(port), "--state",
         str(state), "--project", project, "--location", region],
        log_path=log, env=env, cwd=ROOT,
    )
    return started.add("vertex", pid, port, log, f"http://127.0.0.1:{port}/healthz")


# Further local Google APIs, each `python -m MODULE --port P --state FILE --project PROJ --location LOC` with a
# `/healthz`, the Pub/Sub emulator's address in PUBSUB_EMULATOR_HOST, and its address written to local.env.
LOCAL_APIS = (
    # (process name, module, local.env variable)
    ("cloudrun", "localcloud.cloudrun_emulator", "CLOUD_RUN_API_ENDPOINT"),
    ("scheduler", "localcloud.scheduler_emulator", "SCHEDULER_API_ENDPOINT"),
    # The token issuer: the registry API verifies test tokens against its certificates (local mode only).
    ("identity", "localcloud.identity", "REGISTRAR_LOCAL_ID_CERTS_URL"),
)
# The Firestore emulator starts empty, so the schedules behind the scheduler's jobs are gone: its jobs would only
# fire ticks for schedules that no longer exist. Cloud Run services do survive a restart of the stack.
FRESH_STATE = ("scheduler",)


def local_api_available(module: str) -> bool:
    return (ROOT / Path(*module.split(".")) / "__main__.py").exists()


def spawn_local_api(started: _Started, name: str, module: str, port: int, project: str, region: str,
                    env: Mapping[str, str], state_dir: Path, logs: Path) -> dict[str, Any]:
    log = logs / f"{name}.log"
    state = state_dir / f"{name}-state.json"
    if name in FRESH_STATE:
        state.unlink(missing_ok=True)
    pid = processes.spawn(
        [sys.executable, "-m", module, "--port", str(port), "--state", str(state),
         "--project", project, "--location", region],
        log_path=log, env=env, cwd=ROOT,
    )
    return started.add(name, pid, port, log, f"http://127.0.0.1:{port}/healthz")


def function_env(base: Mapping[str, str]) -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(ROOT / "functions"), str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**base, "PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1"}


# ---------------------------------------------------------------------------------------------------------------
# Pub/Sub resources (REST on the emulator)


class PubSubAdmin:
    def __init__(self, host: str, project: str, say: Say = _quiet):
        self.base = f"http://{host}/v1/projects/{project}"
        self.project = project
        self.say = say

    def topic_path(self, name: str) -> str:
        return f"projects/{self.project}/topics/{name}"

    def _put(self, url: str, body: Mapping[str, Any]) -> requests.Response:
        response = requests.put(url, json=body, timeout=10)
        if response.status_code == 409:  # already exists (a restarted emulator keeps its --data-dir)
            return response
        response.raise_for_status()
        return response

    def create_topic(self, name: str) -> None:
        self._put(f"{self.base}/topics/{name}", {})

    def create_subscription(self, name: str, topic: str, *, replace: bool = False, **config: Any) -> None:
        """`replace`: delete an existing one first (a push endpoint's port changes between runs); otherwise an
        existing subscription, and the messages it holds, is kept."""
        body = {"topic": self.topic_path(topic), "ackDeadlineSeconds": ACK_DEADLINE_SECONDS, **config}
        url = f"{self.base}/subscriptions/{name}"
        if replace:
            requests.delete(url, timeout=10)
        response = requests.put(url, json=body, timeout=10)
        if response.status_code == 409 and not replace:
            return
        if response.status_code == 400 and "deadLetterPolicy" in body:
            self.say(f"the Pub/Sub emulator refused deadLetterPolicy on {name} ({response.text.strip()[:200]}); "
                     "creating it without one")
            body.pop("deadLetterPolicy")
            response = requests.put(url, json=body, timeout=10)
        response.raise_for_status()


def create_topics(admin: PubSubAdmin, topology: Mapping[str, Any]) -> None:
    for topic in topology["topics"]:
        admin.create_topic(topic["name"])
        if topic.get("dead_letter_topic"):
            admin.create_topic(topic["dead_letter_topic"])
            if topic.get("dead_letter_subscription"):
                admin.create_subscription(topic["dead_letter_subscription"], topic["dead_letter_topic"])


def create_push_subscriptions(admin: PubSubAdmin, topology: Mapping[str, Any], ports: Mapping[str, int]) -> None:
    for topic in topology["topics"]:
        consumer = topic.get("consumer")
        if not consumer:
            continue
        config: dict[str, Any] = {
            "pushConfig": {"pushEndpoint": f"http://127.0.0.1:{ports[consumer['entry_point']]}/"},
            "retryPolicy": RETRY_BACKOFF,
        }
        if topic.get("dead_letter_topic"):
            config["deadLetterPolicy"] = {"deadLetterTopic": admin.topic_path(topic["dead_letter_topic"]),
                                          "maxDeliveryAttempts": consumer["max_delivery_attempts"]}
        admin.create_subscription(consumer["subscription"], topic["name"], replace=True, **config)


# ---------------------------------------------------------------------------------------------------------------
# up / down


def up(state_dir: Path = Path(".registrar"), project: str = "registrar-local", region: str = "us-central1",
       ports: Mapping[str, int] | None = None, say: Say = _quiet, vertex: bool | None = None,
       local_apis: tuple[str, ...] | None = None) -> dict[str, str]:
    """Start the local cloud (or find it running) and return the addresses written to local.env.

    `ports` pins ports by process name (`firestore`, `pubsub`, `vertex`, or an entry point such as
    `registry_api`); anything not named gets a free port. `vertex`: start the local Vertex AI emulator
    (None: if it is part of this checkout). `local_apis`: which of LOCAL_APIS to start (None: all there are).
    """
    state_dir = Path(state_dir).resolve()
    if is_up(state_dir):
        say(f"the local stack is already up ({env_path(state_dir)})")
        return read_env(state_dir)
    if read_processes(state_dir):
        say("a previous stack is partly running; stopping it first")
        down(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    started = _Started(state_dir)
    try:
        with_vertex = VERTEX_EMULATOR_MAIN.exists() if vertex is None else vertex
        env = _start_everything(started, state_dir, project, region, ports, say, with_vertex, local_apis)
    except BaseException:
        _stop_all(started.records)
        processes_path(state_dir).unlink(missing_ok=True)
        raise
    write_env(state_dir, env)
    say(f"the local stack is up; addresses in {env_path(state_dir)}")
    return env


def _start_everything(started: _Started, state_dir: Path, project: str, region: str,
                      ports: Mapping[str, int] | None, say: Say, with_vertex: bool,
                      local_apis: tuple[str, ...] | None = None) -> dict[str, str]:
    topology = load_topology()
    logs = state_dir / "logs"
    say("starting the Firestore and Pub/Sub emulators")
    emulators = [spawn_firestore(started, _port(ports, "firestore"), logs),
                 spawn_pubsub(started, _port(ports, "pubsub"), project, logs, state_dir / "pubsub-data")]
    for record in emulators:
        started.wait_healthy(record)
    firestore_host, pubsub_host = (f"127.0.0.1:{r['port']}" for r in emulators)
    env = {"GOOGLE_CLOUD_PROJECT": project, "GOOGLE_CLOUD_REGION": region,
           "FIRESTORE_EMULATOR_HOST": firestore_host, "PUBSUB_EMULATOR_HOST": pubsub_host}
    admin = PubSubAdmin(pubsub_host, project, say)
    create_topics(admin, topology)

    servers = []
    if with_vertex:
        say("starting the Vertex AI emulator")
        vertex = spawn_vertex_emulator(started, _port(ports, "vertex"), project, region, function_env(env), state_dir, logs)
        started.wait_healthy(vertex)
        env["VERTEX_API_ENDPOINT"] = f"http://127.0.0.1:{vertex['port']}"
        # The emulator keeps its Admin Activity audit log and answers Cloud Logging's entries.list for it.
        env["LOGGING_API_ENDPOINT"] = env["VERTEX_API_ENDPOINT"]
    for name, module, variable in LOCAL_APIS:
        if local_api_available(module) and (local_apis is None or name in local_apis):
            say(f"starting the local {name} API")
            record = spawn_local_api(started, name, module, _port(ports, name), project, region, function_env(env),
                                     state_dir, logs)
            started.wait_healthy(record)
            env[variable] = f"http://127.0.0.1:{record['port']}"
    say("starting the functions")
    for _, consumer in consumers(topology):
        entry_point = consumer["entry_point"]
        servers.append(spawn_function(started, entry_point, "cloudevent", _port(ports, entry_point), function_env(env), logs))
    for entry_point in http_entry_points(topology):
        port = _port(ports, entry_point)
        # The API's URL is the audience its callers' ID tokens must name.
        api_env = {**env, "REGISTRAR_API_AUDIENCES": f"http://127.0.0.1:{port}"}
        servers.append(spawn_function(started, entry_point, "http", port, function_env(api_env), logs))
    for record in servers:
        started.wait_healthy(record)
    create_push_subscriptions(admin, topology, {r["name"]: r["port"] for r in servers})
    api_port = next(r["port"] for r in servers if r["name"] in http_entry_points(topology))
    return {**env, "REGISTRAR_API_URL": f"http://127.0.0.1:{api_port}"}


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, timeout: float = 15.0) -> None:
    """Stop a recorded process and everything in its group (an emulator's JVM outlives its gcloud wrapper)."""
    processes.stop(pgid)
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def still_ours(record: Mapping[str, Any]) -> bool:
    """False when the recorded pid now belongs to another program (recycled after a reboot or a crash): every
    process the stack starts has its port on its command line."""
    cmdline = Path(f"/proc/{record['pid']}/cmdline")
    if not Path("/proc/self").exists():
        return True  # no procfs: trust the record
    if not cmdline.exists():
        return False
    text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return not text.strip() or str(record["port"]) in text  # an empty command line is a zombie of ours


def _stop_all(records: list[dict[str, Any]]) -> None:
    for record in reversed(records):
        stop_group(int(record["pid"]))


def down(state_dir: Path = Path(".registrar"), say: Say = _quiet) -> list[dict[str, Any]]:
    """Stop exactly the recorded process groups; remove processes.json and local.env. Returns what was stopped."""
    state_dir = Path(state_dir).resolve()
    records = read_processes(state_dir)
    for record in reversed(records):
        if not still_ours(record):
            say(f"{record['name']} (pid {record['pid']}) is no longer running")
            continue
        say(f"stopping {record['name']} (pid {record['pid']})")
        stop_group(int(record["pid"]))
    processes_path(state_dir).unlink(missing_ok=True)
    env_path(state_dir).unlink(missing_ok=True)
    return records

