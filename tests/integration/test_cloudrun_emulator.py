"""The local Cloud Run, started as a real process and driven only through `CloudRunServing` and the official
`run_v2.ServicesClient` (REST transport). Services run the real scann server from `serving_images/` with the
pipeline's TensorFlow (`.venv-pipeline`; without it these tests fail and say to run `make pipeline-setup`)."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import timezone
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from registrar.adapters.cloudrun import CloudRunServing
from registrar.kernel.errors import PermanentError
from registrar.kernel.ports import ServiceSpec
from serving_bundle import ServingBundle, build_serving_bundle, pipeline_python

from localcloud import processes

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "registrar-test"
LOCATION = "us-central1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
SCANN_IMAGE = "us-central1-docker.pkg.dev/registrar-test/serving/scann-server:v1"
NATIVE_IMAGE = "us-central1-docker.pkg.dev/registrar-test/serving/tf-serving-native:v1"
OTHER_IMAGE = "us-docker.pkg.dev/cloudrun/container/hello:latest"
MODEL_NAME = "recs"
READY = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED


class Emulator:
    """`python -m localcloud.cloudrun_emulator` in its own process group, as `registrar local up` starts it."""

    def __init__(self, state_path: Path, env: dict[str, str] | None = None) -> None:
        self.state_path = state_path
        self.env = env or {}
        self.pid = 0
        self.url = ""

    @property
    def log(self) -> Path:
        return self.state_path.parent / "cloudrun.log"

    def start(self) -> Emulator:
        port = processes.free_port()
        pythonpath = os.pathsep.join([str(ROOT / "functions"), str(ROOT)])
        self.pid = processes.spawn(
            [sys.executable, "-m", "localcloud.cloudrun_emulator", "--port", str(port), "--state",
             str(self.state_path), "--project", PROJECT, "--location", LOCATION],
            log_path=self.log, env={"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", **self.env}, cwd=ROOT,
        )
        self.url = f"http://127.0.0.1:{port}"
        processes.wait_http(f"{self.url}/healthz", timeout=60, pid=self.pid, log_path=self.log)
        return self

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM to the emulator alone (not its group): it must stop its serving processes itself."""
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while processes.alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not processes.alive(self.pid), f"the emulator ignored SIGTERM\n{self.log.read_text()[-2000:]}"

    def stop(self) -> None:
        processes.stop(self.pid)

    def serving(self) -> CloudRunServing:
        return CloudRunServing(PROJECT, LOCATION, api_endpoint=self.url, lro_timeout=280)

    def client(self) -> run_v2.ServicesClient:
        return run_v2.ServicesClient(transport="rest", client_options={"api_endpoint": self.url},
                                     credentials=AnonymousCredentials())

    def processes(self) -> list[dict]:
        return requests.get(f"{self.url}/emulator/processes", timeout=5).json()["processes"]


def serving_env() -> dict[str, str]:
    return {"REGISTRAR_SERVING_PYTHON": os.environ.get("REGISTRAR_SERVING_PYTHON") or str(pipeline_python())}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ServingBundle:
    return build_serving_bundle(tmp_path_factory.mktemp("bundle") / "1")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    running = Emulator(tmp_path_factory.mktemp("cloudrun") / "cloudrun-state.json", serving_env()).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def serving(emulator) -> CloudRunServing:
    return emulator.serving()


@pytest.fixture(scope="module")
def client(emulator) -> run_v2.ServicesClient:
    return emulator.client()


def spec(service_id: str, bundle_path: Path | str, *, image: str = SCANN_IMAGE, version: str = "1",
         labels: dict[str, str] | None = None) -> ServiceSpec:
    return ServiceSpec(
        service_id=service_id, image=image,
        env={"MODEL_NAME": MODEL_NAME, "MODEL_VERSION": version, "BUNDLE_PATH": str(bundle_path)},
        labels=labels if labels is not None else {"registrar-model": "recs", "registrar-version": version},
        min_instances=0, max_instances=2, memory="2Gi", cpu="1",
    )


def recommend(uri: str) -> dict:
    response = requests.post(f"{uri}/v1/models/{MODEL_NAME}:predict",
                             json={"instances": [ServingBundle.instance()]}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def refused(uri: str) -> bool:
    try:
        requests.get(f"{uri}/healthz", timeout=2)
    except requests.ConnectionError:
        return True
    return False


def wait_until(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


# ---------------------------------------------------------------------------------------------------------------
# Serving


def test_create_serves_the_model_at_the_reported_uri(emulator, serving, client, bundle):
    state = serving.apply_service(spec("recs-v1", bundle.path))

    assert state.ready, state.message
    assert state.uri and state.uri.startswith("http://127.0.0.1:")
    assert (state.generation, state.image, state.labels) == (1, SCANN_IMAGE, {"registrar-model": "recs",
                                                                               "registrar-version": "1"})
    assert state.env["BUNDLE_PATH"] == str(bundle.path)
    assert state.latest_ready_revision.startswith("recs-v1-00001-")
    assert state.update_time.tzinfo is not None and state.update_time.utcoffset() == timezone.utc.utcoffset(None)
    status = requests.get(f"{state.uri}/v1/models/{MODEL_NAME}", timeout=10).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    prediction = recommend(state.uri)
    assert prediction["product_ids"] and set(prediction["product_ids"]) <= set(bundle.product_ids)

    service = client.get_service(name=f"{PARENT}/services/recs-v1")
    assert service.terminal_condition.type_ == "Ready" and service.terminal_condition.state == READY
    assert {c.type_: c.state for c in service.conditions} == {"RoutesReady": READY, "ConfigurationsReady": READY}
    assert service.latest_created_revision == service.latest_ready_revision == \
        f"{PARENT}/services/recs-v1/revisions/{state.latest_ready_revision}"
    assert [(t.type_, t.percent) for t in service.traffic_statuses] == \
        [(run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, 100)]
    assert not service.reconciling and service.etag and service.observed_generation == 1
    assert service.ingress == run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL
    assert dict(service.template.containers[0].resources.limits) == {"memory": "2Gi", "cpu": "1"}
    assert (service.template.scaling.min_instance_count, service.template.scaling.max_instance_count) == (0, 2)
    assert service.create_time <= service.update_time
    assert serving.get_service("recs-v1") == state
    assert (emulator.state_path.parent / "logs" / "run-recs-v1.log").exists()


def test_reapplying_the_same_spec_keeps_the_revision(serving, client, bundle):
    first = serving.apply_service(spec("recs-same", bundle.path))
    again = serving.apply_service(spec("recs-same", bundle.path))

    assert (again.generation, again.latest_ready_revision, again.uri) == \
        (first.generation, first.latest_ready_revision, first.uri)
    # the same template sent through the raw client (no update mask: a full replacement) changes nothing either
    current = client.get_service(name=f"{PARENT}/services/recs-same")
    updated = client.update_service(service=current).result(timeout=60)
    assert (updated.generation, updated.latest_ready_revision) == (1, current.latest_ready_revision)
    assert updated.etag == current.etag


def test_a_new_template_rolls_out_a_new_revision_and_stops_the_old_process(emulator, serving, bundle):
    first = serving.apply_service(spec("recs-roll", bundle.path))
    old_pids = [p["pid"] for p in emulator.processes() if p["service"] == "recs-roll"]

    second = serving.apply_service(spec("recs-roll", bundle.path, version="2"))

    assert second.ready, second.message
    assert second.generation == 2 and second.latest_ready_revision.startswith("recs-roll-00002-")
    assert second.env["MODEL_VERSION"] == "2"
    assert requests.get(f"{second.uri}/v1/models/{MODEL_NAME}", timeout=10).json()[
        "model_version_status"][0]["version"] == "2"
    assert wait_until(lambda: refused(first.uri)), "the old revision still answers"
    assert wait_until(lambda: not any(processes.alive(pid) for pid in old_pids))
    # labels are metadata: no new revision
    relabelled = serving.apply_service(spec("recs-roll", bundle.path, version="2",
                                            labels={"registrar-model": "recs", "registrar-version": "2",
                                                    "team": "recs"}))
    assert (relabelled.generation, relabelled.latest_ready_revision, relabelled.uri) == \
        (2, second.latest_ready_revision, second.uri)
    assert relabelled.labels["team"] == "recs"


def test_native_tf_serving_images_serve_their_savedmodel_through_the_tf_serving_stand_in(serving, bundle):
    native = spec("recs-native", bundle.path, image=NATIVE_IMAGE)
    native.env["MODEL_PATH"] = str(bundle.path / "retrieval_model")
    state = serving.apply_service(native)

    assert state.ready, state.message
    assert "native TF Serving cannot run locally" in state.message and "MODEL_PATH" in state.message
    served = recommend(state.uri)
    # the SavedModel's own exact search, as the scann server's brute-force path computes it from the bundle
    brute = serving.apply_service(spec("recs-brute", bundle.path, image=SCANN_IMAGE))
    response = requests.post(f"{brute.uri}/v1/models/{MODEL_NAME}:predict",
                             json={"instances": [ServingBundle.instance()], "top_k": 10}, timeout=30)
    assert response.status_code == 200, response.text
    assert served["product_ids"] == response.json()["predictions"][0]["product_ids"]
    assert serving.delete_service("recs-brute") is True


def test_delete_stops_the_serving_process(emulator, serving, client, bundle):
    state = serving.apply_service(spec("recs-gone", bundle.path))
    pids = [p["pid"] for p in emulator.processes() if p["service"] == "recs-gone"]
    assert pids and recommend(state.uri)

    assert serving.delete_service("recs-gone") is True

    assert serving.get_service("recs-gone") is None
    with pytest.raises(gexc.NotFound):
        client.get_service(name=f"{PARENT}/services/recs-gone")
    assert refused(state.uri)
    assert not any(processes.alive(pid) for pid in pids)
    assert serving.delete_service("recs-gone") is False


def test_a_server_that_cannot_start_fails_the_revision_with_its_log(serving, tmp_path):
    state = serving.apply_service(spec("recs-broken", tmp_path / "no-bundle-here"))

    assert not state.ready and state.uri is None
    assert "recs-broken-00001-" in state.message and "not ready" in state.message
    assert "BUNDLE_PATH" in state.message  # the server's own complaint, from the log tail


# ---------------------------------------------------------------------------------------------------------------
# API rules (no serving process needed)


def test_invalid_service_ids_are_refused(serving, client, bundle):
    for bad in ("Recs", "1recs", "recs-", "recs_v1", "r" * 50):
        with pytest.raises(gexc.BadRequest, match="service id"):  # INVALID_ARGUMENT, as REST reports it
            client.create_service(parent=PARENT, service_id=bad, service=run_v2.Service(
                template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=SCANN_IMAGE)])))
    with pytest.raises(PermanentError, match="Invalid service id 'Recs'") as error:
        serving.apply_service(spec("Recs", bundle.path))
    assert isinstance(error.value.__cause__, gexc.BadRequest) and error.value.__cause__.code == 400
    assert serving.get_service("r" * 49) is None  # 49 characters is a valid id


def test_create_of_an_existing_service_is_already_exists(client):
    service = run_v2.Service(template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=OTHER_IMAGE)]))
    created = client.create_service(parent=PARENT, service_id="hello-twice", service=service).result(timeout=30)

    with pytest.raises(gexc.Conflict, match="already exists"):  # ALREADY_EXISTS
        client.create_service(parent=PARENT, service_id="hello-twice", service=service)
    # an image the emulator cannot run: the operation still completes, with the reason in the Ready condition
    assert created.terminal_condition.state == FAILED
    assert "cannot run locally" in created.terminal_condition.message


def test_cloud_run_settings_rules(client):
    def service(**container):
        return run_v2.Service(template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=OTHER_IMAGE,
                                                                                            **container)]))

    with pytest.raises(gexc.BadRequest, match="reserved env names"):
        client.create_service(parent=PARENT, service_id="bad-env",
                              service=service(env=[run_v2.EnvVar(name="PORT", value="1")]))
    with pytest.raises(gexc.BadRequest, match="at least 2 CPUs"):
        client.create_service(parent=PARENT, service_id="bad-memory", service=service(
            resources=run_v2.ResourceRequirements(limits={"memory": "8Gi", "cpu": "1"})))


def test_update_missing_service_is_not_found_unless_allow_missing(client):
    service = run_v2.Service(name=f"{PARENT}/services/hello-upsert",
                             template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=OTHER_IMAGE)]))
    with pytest.raises(gexc.NotFound):
        client.update_service(service=service)

    created = client.update_service(request={"service": service, "allow_missing": True}).result(timeout=30)

    assert created.name == f"{PARENT}/services/hello-upsert" and created.generation == 1


def test_list_pages_through_every_service(serving, client):
    for index in range(5):
        client.create_service(parent=PARENT, service_id=f"hello-list-{index}", service=run_v2.Service(
            template=run_v2.RevisionTemplate(containers=[run_v2.Container(image=OTHER_IMAGE)]))).result(timeout=30)

    pager = client.list_services(request={"parent": PARENT, "page_size": 2})
    pages = list(pager.pages)
    names = [s.name.rsplit("/", 1)[-1] for page in pages for s in page.services]

    assert len(pages) >= 3 and len(names) == len(set(names))
    assert {f"hello-list-{i}" for i in range(5)} <= set(names)
    assert {s.service_id for s in serving.list_services()} == set(names)


def test_unreachable_cloud_run_is_transient():
    from registrar.kernel.errors import TransientError

    unreachable = CloudRunServing(PROJECT, LOCATION, api_endpoint=f"http://127.0.0.1:{processes.free_port()}")
    with pytest.raises(TransientError):
        unreachable.get_service("recs")


# ---------------------------------------------------------------------------------------------------------------
# Emulator lifecycle


def test_missing_serving_interpreter_fails_the_service(tmp_path, bundle):
    missing = tmp_path / "no-venv" / "bin" / "python"
    emulator = Emulator(tmp_path / "cloudrun-state.json", {"REGISTRAR_SERVING_PYTHON": str(missing)}).start()
    try:
        state = emulator.serving().apply_service(spec("recs-nopython", bundle.path))
    finally:
        emulator.stop()

    assert not state.ready and state.uri is None
    assert "REGISTRAR_SERVING_PYTHON" in state.message and "make pipeline-setup" in state.message
    assert str(missing) in state.message


def test_services_come_back_after_a_restart_and_die_with_the_emulator(tmp_path, bundle):
    state_path = tmp_path / "cloudrun-state.json"
    first = Emulator(state_path, serving_env()).start()
    try:
        before = first.serving().apply_service(spec("recs-restart", bundle.path))
        assert before.ready, before.message
        pids = [p["pid"] for p in first.processes()]
        assert pids
    finally:
        first.terminate()
    assert not any(processes.alive(pid) for pid in pids), "serving processes outlived the emulator"
    assert refused(before.uri)

    second = Emulator(state_path, serving_env()).start()
    try:
        client = second.client()
        name = f"{PARENT}/services/recs-restart"
        restarting = client.get_service(name=name)
        if restarting.reconciling:
            assert restarting.terminal_condition.state == run_v2.Condition.State.CONDITION_PENDING
        assert wait_until(lambda: not client.get_service(name=name).reconciling, timeout=240)
        after = second.serving().get_service("recs-restart")

        assert after.ready, after.message
        assert (after.generation, after.latest_ready_revision) == (before.generation, before.latest_ready_revision)
        assert recommend(after.uri)["product_ids"]
    finally:
        second.stop()


def test_reapplying_a_changed_spec_while_a_revision_fails_keeps_traffic_on_the_old_one(serving, bundle, tmp_path):
    good = serving.apply_service(spec("recs-keep", bundle.path))
    broken = serving.apply_service(spec("recs-keep", tmp_path / "missing", version="2"))

    assert not broken.ready
    assert broken.uri == good.uri and broken.latest_ready_revision == good.latest_ready_revision
    assert f"Traffic stays on revision '{good.latest_ready_revision}'" in broken.message
    assert recommend(broken.uri)["product_ids"]
