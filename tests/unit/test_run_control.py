"""Run control: cancelling a training run, rerunning a finished one, a run's logs and per-epoch metrics — the
handlers (with the in-memory store, through main.on_deploy_request and main.on_pipeline_event) and the API routes
(Flask test client, every answer validated against schemas/openapi.yaml)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fakes import FakeIdentity, FakeServingPlatform, FakeVertex, RecordingPublisher, at
from helpers import deliver, envelope, history_of, run_cmd
from registrar.adapters.memory import InMemoryStore
from registrar.adapters.pipelines import LOCAL_RUNNER_OPTIONS
from registrar.api.app import create_app
from registrar.bootstrap import bootstrap
from registrar.config import Config, IdentitySettings
from registrar.kernel.errors import TransientError
from registrar.kernel.paths import run_path, schedule_path
from registrar.kernel.ports import PipelineRunner
from registrar.kernel.run_config import CONFIG_KEYS, RUN_RESOLVED, RUN_SCOPED
from registrar.registration.commands import rerun_id
from test_api_description import _agree
from test_contract import _errors, _openapi, _response_schema, _validator, registry  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
ALICE, CAROL = "alice@example.com", "carol@example.com"
TOKENS = {"t-alice": ALICE, "t-carol": CAROL}
SEED = {"roles": {"viewer": [f"user:{CAROL}"], "operator": [f"user:{ALICE}"], "approver": []}}
CONFIG = {"model_type": "retrieval", "epochs": 3, "batch_size": 128, "retrieval_algorithm": "brute_force"}


class ControlledRunner(PipelineRunner):
    """Pipelines by run id; `running` are those a cancel can stop. `fail_cancel` / `fail_submit`: how many of the
    next calls fail as Vertex AI unreachable would."""

    def __init__(self, *, logs: str = "file") -> None:
        self.pipelines: dict[str, dict] = {}
        self.running: set[str] = set()
        self.cancels: list[str] = []
        self.fail_cancel = 0
        self.fail_submit = 0
        self.logs = logs
        self.during_submit = None  # called before the pipeline exists, as if another message came meanwhile

    def submit(self, training_run):
        if self.during_submit:
            self.during_submit()
        if self.fail_submit:
            self.fail_submit -= 1
            raise TransientError("Vertex AI: 503")
        run_id = training_run["training_run_id"]
        if run_id not in self.pipelines:
            self.pipelines[run_id] = dict(training_run)
            self.running.add(run_id)
        return f"projects/p/locations/l/pipelineJobs/{run_id}"

    def cancel(self, training_run):
        if self.fail_cancel:
            self.fail_cancel -= 1
            raise TransientError("Vertex AI: 503")
        run_id = training_run["training_run_id"]
        self.cancels.append(run_id)
        stopping = run_id in self.running
        self.running.discard(run_id)
        return stopping

    def log_location(self, training_run):
        if self.logs == "file":
            return f"file:///runs/{training_run['training_run_id']}/runner.log"
        if self.logs == "cloud":
            return "https://console.cloud.google.com/logs/query;query=x?project=p"
        return None

    def log_tail(self, training_run, lines):
        if self.logs != "file":
            return None
        return [f"line {n}" for n in range(1, 301)][-lines:]


class Registry:
    def __init__(self, runner: ControlledRunner | None = None, identity: IdentitySettings | None = None) -> None:
        self.store = InMemoryStore()
        self.publisher = RecordingPublisher()
        self.runner = runner or ControlledRunner()
        self.services = bootstrap(config=Config(identity=identity or IdentitySettings(mode="local",
                                                                                      local_user="developer")),
                                  store=self.store, publisher=self.publisher, registry=FakeVertex(),
                                  now=lambda: at(100), serving=FakeServingPlatform(), runner=self.runner,
                                  identity=FakeIdentity(TOKENS), sleep=lambda _: None)
        app = create_app(lambda: self.store, lambda: self.services)
        app.testing = True
        self.client = app.test_client()

    def run(self, run_id: str) -> dict | None:
        return self.store.get(run_path(run_id))

    def finished_run(self, run_id: str = "run-1", state: str = "SUCCEEDED", **fields) -> dict:
        self.services.bus.handle(run_cmd(run_id, "RUNNING", at(1), model_name="recs", model_type="retrieval"))
        if state != "RUNNING":
            self.services.bus.handle(run_cmd(run_id, state, at(2), model_name="recs"))
        if fields:
            self.store.set(run_path(run_id), {**self.run(run_id), **fields})
        return self.run(run_id)

    def request(self, action: str, run_id: str, request_id: str = "req-0001", **fields):
        payload = {"schema": "registrar.deploy-request.v1", "request_id": request_id, "action": action,
                   "training_run_id": run_id, "requested_at": at(50).isoformat(), "requested_by": ALICE, **fields}
        return envelope(payload, message_id=f"m-{action}-{request_id}")

    def deliver(self, data):
        return deliver(self.services, "on_deploy_request", data)

    def quarantined(self) -> list[dict]:
        return [doc for _, doc in self.store.list("quarantine")]

    def call(self, method: str, url: str, token: str | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def published(self) -> list[dict]:
        return [payload for _, _, payload in self.publisher.published if "action" in payload]


def kinds(store, run_id: str) -> list[str]:
    return [e["kind"] for e in history_of(store, f"training_runs/{run_id}").values()]


# ---------------------------------------------------------------------------------------------------------------
# The rule: which training config keys a run may set


def test_the_config_keys_are_what_both_runners_accept():
    local = set(LOCAL_RUNNER_OPTIONS)
    assert local <= CONFIG_KEYS | set(RUN_RESOLVED)
    tree = ast.parse((ROOT / "pipeline" / "runners" / "vertex.py").read_text())
    [declared] = [node.value for node in ast.walk(tree) if isinstance(node, ast.AnnAssign)
                  and getattr(node.target, "id", "") == "RUNTIME_PARAMETERS"]
    vertex = {key.value for key in declared.keys if isinstance(key, ast.Constant)} | {"dataflow"}
    assert vertex <= CONFIG_KEYS | set(RUN_RESOLVED) | set(RUN_SCOPED)
    assert CONFIG_KEYS <= (local | vertex)  # nothing accepted that no runner takes


def test_the_rerun_body_names_exactly_the_accepted_keys():
    body = _openapi()["components"]["schemas"]["RerunBody"]["properties"]["training_config"]
    assert set(body["properties"]) == CONFIG_KEYS and body["additionalProperties"] is False


# ---------------------------------------------------------------------------------------------------------------
# Cancel


def test_a_cancel_is_recorded_then_the_runner_is_asked_and_the_run_ends_by_its_event():
    world = Registry()
    world.runner.running.add("run-1")
    world.finished_run("run-1", "RUNNING")

    world.deliver(world.request("cancel_run", "run-1", reason="wrong data"))

    run = world.run("run-1")
    assert run["status"] == "RUNNING"  # not made up: the pipeline says when it has stopped
    request = run["cancel_requested"]
    assert (request["by"], request["at"], request["reason"], request["runner"]) == (ALICE, at(50), "wrong data",
                                                                                    "requested")
    assert world.runner.cancels == ["run-1"]
    world.services.bus.handle(run_cmd("run-1", "CANCELLED", at(60), model_name="recs"))
    assert world.run("run-1")["status"] == "CANCELLED"
    assert {"run.cancel_requested", "run.cancel_sent", "run.finished"} <= set(kinds(world.store, "run-1"))


def test_a_redelivered_cancel_records_one_request():
    world = Registry()
    world.runner.running.add("run-1")
    world.finished_run("run-1", "RUNNING")
    message = world.request("cancel_run", "run-1")
    world.deliver(message)
    world.deliver(message)
    world.deliver(world.request("cancel_run", "run-1", request_id="req-0002", reason="again"))

    assert kinds(world.store, "run-1").count("run.cancel_requested") == 1
    request = world.run("run-1")["cancel_requested"]
    assert request["request_id"] == "req-0001" and request["reason"] is None  # the first request stands
    assert request["runner"] == "requested"  # a later "not running" (it has stopped) does not overwrite it


def test_a_crash_between_recording_the_cancel_and_asking_the_runner_is_repaired_by_the_redelivery():
    world = Registry()
    world.runner.running.add("run-1")
    world.finished_run("run-1", "RUNNING")
    world.runner.fail_cancel = 1
    message = world.request("cancel_run", "run-1")

    with pytest.raises(TransientError):
        world.deliver(message)  # recorded, the runner not reached: Pub/Sub redelivers
    assert world.run("run-1")["cancel_requested"]["by"] == ALICE and world.runner.cancels == []

    world.deliver(message)
    assert world.runner.cancels == ["run-1"]
    assert world.run("run-1")["cancel_requested"]["runner"] == "requested"


def test_a_cancel_of_a_run_that_ended_changes_nothing_and_asks_no_runner():
    world = Registry()
    world.finished_run("run-1", "SUCCEEDED")
    world.deliver(world.request("cancel_run", "run-1"))
    assert "cancel_requested" not in world.run("run-1") and world.runner.cancels == []
    assert "ignored.cancel_request" in kinds(world.store, "run-1")


def test_a_runner_with_nothing_running_is_recorded_as_such():
    world = Registry()
    world.finished_run("run-1", "RUNNING")
    world.deliver(world.request("cancel_run", "run-1"))
    assert world.run("run-1")["cancel_requested"]["runner"] == "not_running"
    assert world.run("run-1")["status"] == "RUNNING"


def test_a_run_cancelled_before_its_pipeline_was_submitted_is_never_submitted():
    world = Registry()
    world.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    world.runner.fail_submit = 1
    rerun = world.request("rerun", "run-1")
    with pytest.raises(TransientError):
        world.deliver(rerun)  # the new run is recorded, its submission failed
    new_id = rerun_id("run-1", "req-0001")
    assert world.run(new_id)["submission"]["status"] == "error"

    world.deliver(world.request("cancel_run", new_id, request_id="req-0002"))
    world.deliver(rerun)  # the redelivery that would have submitted it

    run = world.run(new_id)
    assert new_id not in world.runner.pipelines
    assert (run["status"], run["submission"]["status"]) == ("CANCELLED", "cancelled")
    assert run["cancel_requested"]["runner"] == "not_running"


def test_a_cancel_that_reached_the_runner_while_the_submission_was_in_flight_is_sent_again_once_submitted():
    world = Registry()
    world.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    new_id = rerun_id("run-1", "req-0001")
    cancel = world.request("cancel_run", new_id, request_id="req-0002")
    world.runner.during_submit = lambda: world.deliver(cancel)
    world.deliver(world.request("rerun", "run-1"))

    run = world.run(new_id)
    assert world.runner.cancels == [new_id, new_id]  # first nothing to stop yet, then the pipeline
    assert new_id in world.runner.pipelines and new_id not in world.runner.running
    assert (run["submission"]["status"], run["cancel_requested"]["runner"]) == ("submitted", "requested")
    assert kinds(world.store, new_id).count("run.cancel_sent") == 1


def test_a_submission_with_no_cancel_asks_the_runner_for_none():
    world = Registry()
    world.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    world.deliver(world.request("rerun", "run-1"))
    assert world.run(rerun_id("run-1", "req-0001"))["submission"]["status"] == "submitted"
    assert world.runner.cancels == []


# ---------------------------------------------------------------------------------------------------------------
# Rerun


def test_a_rerun_is_a_new_run_with_the_edited_config_lineage_and_a_fresh_baseline():
    world = Registry()
    world.store.set(schedule_path("sch-00000000000000000000"),
                       {"schedule_id": "sch-00000000000000000000", "statistics": {"total": 4, "successful": 4,
                                                                                   "failed": 0}})
    world.finished_run("run-1", "FAILED", training_config=CONFIG, schedule_id="sch-00000000000000000000",
                          baseline={"version": "1"}, baseline_version="1")

    world.deliver(world.request("rerun", "run-1", training_config={"epochs": 5, "batch_size": None},
                                      reason="more epochs"))

    new_id = rerun_id("run-1", "req-0001")
    run = world.run(new_id)
    assert run["rerun_of"] == "run-1" and run["trigger"] == "rerun" and run["requested_by"] == ALICE
    assert run["training_config"] == {"model_type": "retrieval", "epochs": 5, "retrieval_algorithm": "brute_force"}
    assert (run["model_name"], run["model_type"], run["schedule_id"]) == ("recs", "retrieval",
                                                                          "sch-00000000000000000000")
    assert run["baseline"]["version"] is None  # resolved afresh (no model named recs is registered here)
    assert run["submission"]["status"] == "submitted" and run["rerun_reason"] == "more epochs"
    assert world.runner.pipelines[new_id]["training_config"]["epochs"] == 5
    assert world.run("run-1")["reruns"] == [new_id]
    assert world.store.get(schedule_path("sch-00000000000000000000"))["statistics"]["total"] == 5
    assert "run.rerun_requested" in kinds(world.store, new_id)
    assert "run.rerun" in kinds(world.store, "run-1")


def test_a_rerun_request_delivered_twice_starts_one_run():
    world = Registry()
    world.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    message = world.request("rerun", "run-1")
    world.deliver(message)
    world.deliver(message)
    world.deliver(world.request("rerun", "run-1"))  # re-sent with the same request id: another message

    new_id = rerun_id("run-1", "req-0001")
    assert list(world.runner.pipelines) == [new_id]
    assert world.run("run-1")["reruns"] == [new_id]
    assert kinds(world.store, new_id).count("run.rerun_requested") == 1


def test_two_rerun_requests_are_two_runs_numbered_apart():
    world = Registry()
    world.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    world.deliver(world.request("rerun", "run-1", request_id="req-0001"))
    world.deliver(world.request("rerun", "run-1", request_id="req-0002"))
    first, second = rerun_id("run-1", "req-0001"), rerun_id("run-1", "req-0002")
    assert world.run("run-1")["reruns"] == [first, second]
    assert world.run(first)["run_number"] + 1 == world.run(second)["run_number"]


def test_a_rerun_of_a_run_that_has_not_ended_is_ignored():
    world = Registry()
    world.finished_run("run-1", "RUNNING")
    world.deliver(world.request("rerun", "run-1"))
    assert world.run(rerun_id("run-1", "req-0001")) is None and world.runner.pipelines == {}
    assert "ignored.rerun_request" in kinds(world.store, "run-1")


def test_a_rerun_naming_a_key_no_runner_accepts_is_quarantined_with_the_key():
    world = Registry()
    world.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    world.deliver(world.request("rerun", "run-1", training_config={"epochz": 5}))
    [entry] = world.quarantined()
    assert "training_config.epochz" in entry["reason"]
    assert world.runner.pipelines == {}


# ---------------------------------------------------------------------------------------------------------------
# Per-epoch metrics


EPOCHS = [{"epoch": 1, "train": {"loss": 2.0}, "validation": {"loss": 2.1, "recall_at_100": 0.2}},
          {"epoch": 2, "train": {"loss": 1.5}, "validation": {"loss": 1.7, "recall_at_100": 0.3}}]


def event(state: str, **fields) -> dict:
    from registrar.adapters.pipelines import pipeline_run_event

    return pipeline_run_event(training_run_id="run-1", model_name="recs", model_type="retrieval",
                              pipeline_job_name="local/run-1", state=state, occurred_at=at(5), **fields)


def test_a_run_keeps_the_per_epoch_metrics_its_event_reports():
    world = Registry()
    deliver(world.services, "on_pipeline_event", envelope(event("SUCCEEDED", epochs=EPOCHS)))
    assert world.run("run-1")["epochs"] == EPOCHS


def test_an_event_with_more_than_200_epochs_is_quarantined():
    world = Registry()
    many = [{"epoch": n, "train": {"loss": 1.0}} for n in range(1, 202)]
    deliver(world.services, "on_pipeline_event", envelope(event("SUCCEEDED", epochs=many)))
    assert world.run("run-1") is None and len(world.quarantined()) == 1


# ---------------------------------------------------------------------------------------------------------------
# The API


@pytest.fixture
def api() -> Registry:
    return Registry(identity=IdentitySettings(mode="google", audiences=("https://world.example.com",),
                                              policy_seed=SEED))


def described(registry, api: Registry, method: str, url: str, response) -> None:  # noqa: F811
    schema = _response_schema(_openapi(), method, url, response.status_code, api.client.application)
    assert _errors(_validator(schema, registry), response.get_json()) == []


def test_cancel_over_http(api, registry):  # noqa: F811
    api.finished_run("run-1", "RUNNING")
    url = "/training-runs/run-1:cancel"
    accepted = api.call("POST", url, "t-alice", json={"reason": "wrong data"})
    assert accepted.status_code == 202, accepted.get_json()
    described(registry, api, "POST", url, accepted)
    [payload] = api.published()
    assert (payload["action"], payload["training_run_id"], payload["requested_by"], payload["reason"]) == (
        "cancel_run", "run-1", ALICE, "wrong data")
    api.deliver(envelope(payload))
    again = api.call("POST", url, "t-alice", json={})
    assert again.status_code == 202 and again.get_json()["cancel_requested"]["reason"] == "wrong data"
    described(registry, api, "POST", url, again)
    assert api.call("POST", url, "t-carol", json={}).status_code == 403
    missing = api.call("POST", "/training-runs/nope:cancel", "t-alice", json={})
    assert missing.status_code == 404
    described(registry, api, "POST", "/training-runs/nope:cancel", missing)
    api.services.bus.handle(run_cmd("run-1", "CANCELLED", at(60)))
    ended = api.call("POST", url, "t-alice", json={})
    assert ended.status_code == 409 and "CANCELLED" in ended.get_json()["error"]["message"]
    described(registry, api, "POST", url, ended)


def test_rerun_over_http_answers_the_new_run_at_once(api, registry):  # noqa: F811
    api.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    url = "/training-runs/run-1:rerun"
    body = {"training_config": {"epochs": 7}, "reason": "longer", "request_id": "retry-key-1"}
    accepted = api.call("POST", url, "t-alice", json=body)
    assert accepted.status_code == 202, accepted.get_json()
    described(registry, api, "POST", url, accepted)
    answer = accepted.get_json()
    assert answer["training_run_id"] == rerun_id("run-1", "retry-key-1") and answer["training_config"]["epochs"] == 7
    retried = api.call("POST", url, "t-alice", json=body)
    assert retried.get_json()["training_run_id"] == answer["training_run_id"]  # a retry names the same run
    for payload in api.published():
        api.deliver(envelope(payload))
    assert list(api.runner.pipelines) == [answer["training_run_id"]]
    run = api.call("GET", answer["status_url"], "t-carol")
    assert run.status_code == 200 and run.get_json()["rerun_of"] == "run-1"
    described(registry, api, "GET", answer["status_url"], run)
    original = api.call("GET", "/training-runs/run-1", "t-carol")
    assert original.get_json()["reruns"] == [answer["training_run_id"]]
    described(registry, api, "GET", "/training-runs/run-1", original)


def test_rerun_refusals_name_what_is_wrong(api, registry):  # noqa: F811
    api.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    api.finished_run("run-2", "RUNNING")
    unknown = api.call("POST", "/training-runs/run-1:rerun", "t-alice", json={"training_config": {"epochz": 1}})
    assert unknown.status_code == 400 and unknown.get_json()["error"]["parameter"] == "training_config.epochz"
    scoped = api.call("POST", "/training-runs/run-1:rerun", "t-alice",
                      json={"training_config": {"baseline_version": "3"}})
    assert scoped.status_code == 400 and "set by the registry" in scoped.get_json()["error"]["message"]
    bad_value = api.call("POST", "/training-runs/run-1:rerun", "t-alice", json={"training_config": {"epochs": 0}})
    assert bad_value.status_code == 400 and bad_value.get_json()["error"]["parameter"] == "training_config.epochs"
    running = api.call("POST", "/training-runs/run-2:rerun", "t-alice", json={})
    assert running.status_code == 409
    described(registry, api, "POST", "/training-runs/run-2:rerun", running)
    assert api.call("POST", "/training-runs/nope:rerun", "t-alice", json={}).status_code == 404
    assert api.call("POST", "/training-runs/run-1:rerun", "t-carol", json={}).status_code == 403
    assert api.published() == []


def test_logs_of_a_local_run_are_its_file_and_last_lines(api, registry):  # noqa: F811
    api.finished_run("run-1", "RUNNING")
    url = "/training-runs/run-1/logs"
    logs = api.call("GET", url, "t-carol")
    assert logs.status_code == 200
    described(registry, api, "GET", url, logs)
    body = logs.get_json()
    assert body["kind"] == "file" and body["location"].startswith("file://")
    assert len(body["lines"]) == 100 and body["lines"][-1] == "line 300"
    assert api.call("GET", url + "?tail=3", "t-carol").get_json()["lines"] == ["line 298", "line 299", "line 300"]
    too_many = api.call("GET", url + "?tail=1001", "t-carol")
    assert too_many.status_code == 400 and too_many.get_json()["error"]["parameter"] == "tail"
    assert api.call("GET", "/training-runs/nope/logs", "t-carol").status_code == 404


def test_logs_in_production_are_a_cloud_logging_link(registry):  # noqa: F811
    api = Registry(ControlledRunner(logs="cloud"))
    api.finished_run("run-1", "SUCCEEDED")
    logs = api.call("GET", "/training-runs/run-1/logs")
    assert logs.status_code == 200 and logs.get_json()["kind"] == "cloud_logging" and "lines" not in logs.get_json()
    described(registry, api, "GET", "/training-runs/run-1/logs", logs)
    none = Registry(ControlledRunner(logs="none"))
    none.finished_run("run-1", "SUCCEEDED")
    assert none.call("GET", "/training-runs/run-1/logs").status_code == 404


CANCEL_BODIES = [{}, {"reason": "x"}, {"reason": ""}, {"reason": "   "}, {"reason": None}, {"reason": 5},
                 {"reason": "x" * 1001}, {"request_id": "short"}, {"request_id": "long-enough-1"},
                 {"requested_by": "mallory@example.com"}, {"why": "x"}]
RERUN_BODIES = [{}, {"training_config": None}, {"training_config": {}}, {"training_config": {"epochs": 5}},
                {"training_config": {"epochs": "5"}}, {"training_config": {"epochs": 0}},
                {"training_config": {"epochs": None}}, {"training_config": {"model_type": None}},
                {"training_config": {"model_type": "ranking"}}, {"training_config": {"model_type": "x"}},
                {"training_config": {"retrieval_algorithm": "scann", "gpu_count": 1}},
                {"training_config": {"learning_rate": 0}}, {"training_config": {"bigquery_query": "SELECT 1"}},
                {"training_config": {"seed": {"__x__": 1}}}, {"training_config": {"nope": 1}},
                {"training_config": []}, {"reason": ""}, {"reason": "why"}, {"request_id": "x"}]


@pytest.mark.parametrize("body", CANCEL_BODIES)
def test_cancel_bodies(api, registry, body):  # noqa: F811
    api.finished_run("run-1", "RUNNING")
    _agree(registry, "CancelRunBody", body, api.call("POST", "/training-runs/run-1:cancel", "t-alice", json=body))


@pytest.mark.parametrize("body", RERUN_BODIES)
def test_rerun_bodies(api, registry, body):  # noqa: F811
    api.finished_run("run-1", "SUCCEEDED", training_config=CONFIG)
    _agree(registry, "RerunBody", body, api.call("POST", "/training-runs/run-1:rerun", "t-alice", json=body))
