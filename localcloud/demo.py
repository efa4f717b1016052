"""A realistic story played against the local stack, then the registry it leaves behind.

With the local Vertex AI emulator (VERTEX_API_ENDPOINT in local.env) the story acts, and the emulator's own Cloud
Audit Log entries, published to `model-audit-events` as the production log sink does, drive the registry:
a training run starts and succeeds, and on_pipeline_event registers its model in Vertex (version 1); another
team uploads version 2 with the aiplatform client (it takes `default`); `production` moves to version 2; someone
deletes version 1 in the console; the run's completion is delivered twice and one message is not JSON at all.

Without the emulator the same story is told with Audit Log entries shaped as the Logging sink delivers them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import requests

from localcloud import auditlog

PIPELINE_TOPIC = "pipeline-events"
AUDIT_TOPIC = "model-audit-events"
MODEL_NAME = "products_retrieval"


# ---------------------------------------------------------------------------------------------------------------
# Publishing


class Publisher:
    """google-cloud-pubsub's PublisherClient pointed at the emulator."""

    def __init__(self, env: Mapping[str, str]):
        from google.cloud import pubsub_v1

        self.project = env["GOOGLE_CLOUD_PROJECT"]
        saved = os.environ.get("PUBSUB_EMULATOR_HOST")
        os.environ["PUBSUB_EMULATOR_HOST"] = env["PUBSUB_EMULATOR_HOST"]  # read when the client is built
        try:
            self.client = pubsub_v1.PublisherClient()
        finally:
            if saved is None:
                os.environ.pop("PUBSUB_EMULATOR_HOST")
            else:
                os.environ["PUBSUB_EMULATOR_HOST"] = saved

    def publish(self, topic: str, payload: Mapping[str, Any] | bytes) -> str:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return self.client.publish(self.client.topic_path(self.project, topic), data).result(timeout=30)


def pipeline_run_event(run_id: str, state: str, at: datetime, *, model_name: str = MODEL_NAME,
                       **fields: Any) -> dict[str, Any]:
    """Our PipelineRunEvent (schemas/events/pipeline-run-event.v1.json), of a run the demo makes up: `simulated`."""
    return {
        "schema": "registrar.pipeline-run-event.v1",
        "event_id": hashlib.sha256(f"{run_id}:{state}".encode()).hexdigest()[:32],
        "training_run_id": run_id,
        "model_name": model_name,
        "model_type": "retrieval",
        "pipeline_job_name": f"projects/123/locations/us-central1/pipelineJobs/{run_id}",
        "state": state,
        "occurred_at": auditlog.rfc3339(at),
        "simulated": True,
        **fields,
    }


# ---------------------------------------------------------------------------------------------------------------
# The story


@dataclass(frozen=True)
class Story:
    """The story told without the emulator: Audit Log entries for a model only they describe."""

    project: str
    location: str
    model_id: str
    run_id: str
    start: datetime
    artifacts_root: Path

    @classmethod
    def new(cls, project: str, location: str, artifacts_root: Path, now: datetime | None = None) -> Story:
        now = now or datetime.now(timezone.utc)
        stamp = int(now.timestamp())
        return cls(project, location, model_id=str(stamp), run_id=f"demo-run-{stamp}", start=now - timedelta(minutes=30),
                   artifacts_root=artifacts_root.resolve())

    def write_pushed_model(self) -> str:
        """The Pusher's output, `pushed_model/<version>/saved_model.pb`, on the local filesystem."""
        version_dir = self.artifacts_root / self.run_id / "pushed_model" / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        (version_dir / "saved_model.pb").write_bytes(b"")
        return f"{version_dir}/"

    def at(self, minutes: float) -> datetime:
        return self.start + timedelta(minutes=minutes)

    @property
    def labels(self) -> dict[str, str]:
        return {"training_run_id": self.run_id, "model_type": "retrieval", "blessed": "true"}

    def run_events(self) -> list[dict[str, Any]]:
        artifacts = {"pipeline_root": str(self.artifacts_root / self.run_id), "pushed_model_uri": self.write_pushed_model()}
        return [
            pipeline_run_event(self.run_id, "RUNNING", self.at(0), stage="Trainer"),
            pipeline_run_event(self.run_id, "SUCCEEDED", self.at(10), stage="Pusher", artifacts=artifacts,
                               metrics={"recall_at_100": 0.412, "loss": 1.87}, blessed=True,
                               retrieval_algorithm="scann"),
        ]

    def uploads(self) -> list[dict[str, Any]]:
        entries = []
        for version in ("1", "2"):
            first, last = auditlog.upload_model_entries(
                project=self.project, location=self.location, model_id=self.model_id, version_id=version,
                display_name=MODEL_NAME, artifact_uri=f"gs://registrar-demo/pipelines/{self.run_id}/pushed_model/{version}/",
                labels=self.labels, started_at=self.at(10 + int(version)), finished_at=self.at(10.5 + int(version)),
                operation_id=f"{self.model_id}{version}0", parent_model=version != "1",
            )
            entries += [first, last]
        return entries

    def labelling(self) -> list[dict[str, Any]]:
        return [auditlog.update_model_entry(project=self.project, location=self.location, model_id=self.model_id,
                                            version_id=version, labels=self.labels, at=self.at(13))
                for version in ("1", "2")]

    def alias_moves(self) -> list[dict[str, Any]]:
        return [auditlog.merge_version_aliases_entry(project=self.project, location=self.location, model_id=self.model_id,
                                                     version_id=version, aliases=["production"], at=self.at(minute))
                for version, minute in (("1", 14), ("2", 16))]

    def console_delete(self) -> dict[str, Any]:
        return auditlog.delete_model_version_entry(project=self.project, location=self.location, model_id=self.model_id,
                                                   version_id="1", at=self.at(20), operation_id=f"{self.model_id}99",
                                                   namespace="ui")


@dataclass(frozen=True)
class VertexStory:
    """The story acted against the local Vertex AI emulator through the aiplatform client."""

    project: str
    location: str
    api_endpoint: str
    model_name: str
    run_id: str
    stamp: int
    start: datetime
    artifacts_root: Path

    @classmethod
    def new(cls, env: Mapping[str, str], artifacts_root: Path, now: datetime | None = None) -> VertexStory:
        now = now or datetime.now(timezone.utc)
        stamp = int(now.timestamp() * 1000)  # unique per run, so the story can be replayed on a running stack
        return cls(env["GOOGLE_CLOUD_PROJECT"], env.get("GOOGLE_CLOUD_REGION", "us-central1"),
                   env["VERTEX_API_ENDPOINT"].rstrip("/"), model_name=f"{MODEL_NAME}_{stamp}",
                   run_id=f"demo-run-{stamp}", stamp=stamp, start=now - timedelta(minutes=30),
                   artifacts_root=artifacts_root.resolve())

    @property
    def model_id(self) -> str:
        from registrar.registration.upload import model_id_for

        return model_id_for(self.model_name)

    def at(self, minutes: float) -> datetime:
        return self.start + timedelta(minutes=minutes)

    def registry(self):
        from registrar.adapters.vertex import VertexModelRegistry

        return VertexModelRegistry(self.project, self.location, api_endpoint=self.api_endpoint, lro_timeout=60)

    def write_pushed_model(self) -> str:
        """The Pusher's output: a timestamped SavedModel directory `pushed_model/<ts>/saved_model.pb`."""
        version_dir = self.artifacts_root / self.run_id / "pushed_model" / str(self.stamp // 1000)
        version_dir.mkdir(parents=True, exist_ok=True)
        (version_dir / "saved_model.pb").write_bytes(b"\x08\x01")
        return f"{version_dir}/"

    def run_events(self) -> list[dict[str, Any]]:
        artifacts = {"pipeline_root": str(self.artifacts_root / self.run_id), "pushed_model_uri": self.write_pushed_model()}
        return [
            pipeline_run_event(self.run_id, "RUNNING", self.at(0), model_name=self.model_name, stage="Trainer"),
            pipeline_run_event(self.run_id, "SUCCEEDED", self.at(10), model_name=self.model_name, stage="Pusher",
                               artifacts=artifacts, metrics={"recall_at_100": 0.412, "loss": 1.87}, blessed=True,
                               retrieval_algorithm="scann"),
        ]

    def upload_second_version(self):
        """Another team uploads a version of the same model with the aiplatform client; it takes `default`."""
        from registrar.registration.upload import serving_image

        return self.registry().upload_version(
            display_name=self.model_name,
            artifact_uri=f"gs://registrar-demo/another-team/{self.model_name}/pushed_model/{self.stamp // 1000}/",
            labels={"model_type": "retrieval", "blessed": "true"},
            serving_image=serving_image("scann"),
            parent_model_id=self.model_id,
            description="Uploaded by another team",
        )

    def promote(self, version_id: str) -> None:
        if self.registry().merge_aliases(self.model_id, version_id, ["production"]) is None:
            raise RuntimeError(f"version {version_id} of {self.model_id} is not in Vertex AI")

    def console_delete(self, version_id: str) -> None:
        """Delete a version the way the console does (audited in the `ui` namespace)."""
        url = f"{self.api_endpoint}/emulator/console/models/{self.model_id}@{version_id}:delete"
        response = requests.post(url, timeout=30)
        if response.status_code >= 400:
            raise RuntimeError(f"the console delete of {self.model_id}@{version_id} failed: "
                               f"{response.status_code} {response.text[:300]}")


# ---------------------------------------------------------------------------------------------------------------
# Waiting for the registry


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise TimeoutError(f"the registry did not show {what} within {timeout:.0f}s")


def get_json(api: str, path: str) -> Any:
    response = requests.get(api + path, timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def live_versions(api: str, model_id: str) -> list[str]:
    model = get_json(api, f"/models/{model_id}") or {}
    return sorted(v["version_id"] for v in model.get("versions") or [] if v.get("state") == "live")


def labelled_and_promoted(api: str, story: Story) -> bool:
    model = get_json(api, f"/models/{story.model_id}") or {}
    labelled = [v for v in model.get("versions") or [] if v.get("training_run_id") == story.run_id]
    return len(labelled) == 2 and (model.get("aliases") or {}).get("production") == "2"


def story_done(api: str, story: Story, malformed_id: str) -> bool:
    model = get_json(api, f"/models/{story.model_id}") or {}
    run = get_json(api, f"/training-runs/{story.run_id}") or {}
    quarantined = {q.get("message_id") for q in get_json(api, "/quarantine?limit=500")["messages"]}
    return (live_versions(api, story.model_id) == ["2"] and (model.get("aliases") or {}).get("production") == "2"
            and model.get("blessed") is True and run.get("status") == "SUCCEEDED" and malformed_id in quarantined)


def model_state(api: str, model_id: str) -> dict[str, Any]:
    """{version id: state}, the model's aliases and the model document, from the API."""
    model = get_json(api, f"/models/{model_id}") or {}
    return {"versions": {v["version_id"]: v.get("state") for v in model.get("versions") or []},
            "aliases": dict(model.get("aliases") or {}), "model": model}


def kpi_total(api: str) -> int:
    return int((get_json(api, "/kpis") or {}).get("total") or 0)


def vertex_story_done(api: str, story: VertexStory, malformed_id: str, total_before: int) -> bool:
    state = model_state(api, story.model_id)
    run = get_json(api, f"/training-runs/{story.run_id}") or {}
    registration = run.get("registration") or {}
    quarantined = {q.get("message_id") for q in get_json(api, "/quarantine?limit=500")["messages"]}
    return (kpi_total(api) == total_before + 1
            and state["versions"] == {"1": "deleted", "2": "live"}
            and {k: state["aliases"].get(k) for k in ("default", "production")} == {"default": "2", "production": "2"}
            and run.get("status") == "SUCCEEDED"
            and registration.get("status") == "registered"
            and (registration.get("model_id"), registration.get("version_id")) == (story.model_id, "1")
            and malformed_id in quarantined)


# ---------------------------------------------------------------------------------------------------------------
# Run


def publish_story(publisher: Publisher, story: Story, api: str, timeout: float, say: Callable[[str], None]) -> None:
    """Without the Vertex AI emulator: Audit Log entries shaped as the Logging sink delivers them."""
    say(f"training run {story.run_id}: RUNNING, SUCCEEDED")
    for event in story.run_events():
        publisher.publish(PIPELINE_TOPIC, event)
    say(f"model {story.model_id} ({MODEL_NAME}): UploadModel ×2 (first and last audit entries)")
    uploads = story.uploads()
    for entry in uploads:
        publisher.publish(AUDIT_TOPIC, entry)
    say("a duplicate delivery of the last upload entry")
    publisher.publish(AUDIT_TOPIC, uploads[-1])
    say("a malformed message (not JSON)")
    malformed_id = publisher.publish(AUDIT_TOPIC, b"{oops: this is not json")
    wait_until(lambda: live_versions(api, story.model_id) == ["1", "2"], timeout=timeout, what="both uploaded versions")
    say("the pipeline labels both versions; `production` moves from version 1 to version 2")
    for entry in [*story.labelling(), *story.alias_moves()]:
        publisher.publish(AUDIT_TOPIC, entry)
    wait_until(lambda: labelled_and_promoted(api, story), timeout=timeout, what="the labels and the alias move")
    say("someone deletes version 1 in the console")
    publisher.publish(AUDIT_TOPIC, story.console_delete())
    wait_until(lambda: story_done(api, story, malformed_id), timeout=timeout, what="the whole story")


def act_story(publisher: Publisher, story: VertexStory, api: str, timeout: float, say: Callable[[str], None]) -> None:
    """Act through the aiplatform client against the emulator; its audit entries reach the registry on their own."""
    total_before = kpi_total(api)
    model_id = story.model_id
    events = story.run_events()
    say(f"training run {story.run_id}: RUNNING, SUCCEEDED (on_pipeline_event registers {story.model_name} "
        f"in the local Vertex AI as model {model_id})")
    for event in events:
        publisher.publish(PIPELINE_TOPIC, event)
    wait_until(lambda: model_state(api, model_id)["versions"] == {"1": "live"}, timeout=timeout,
               what="the run's model registered as version 1")

    say("another team uploads version 2 with the aiplatform client (it takes the `default` alias)")
    uploaded = story.upload_second_version()
    if uploaded.version_id != "2":
        raise RuntimeError(f"Vertex AI numbered the second upload {uploaded.version_id}, not 2")
    wait_until(lambda: (s := model_state(api, model_id))["versions"] == {"1": "live", "2": "live"}
               and s["aliases"].get("default") == "2", timeout=timeout, what="version 2 with `default`")

    say("`production` moves to version 2 (mergeVersionAliases, by hand as in the Vertex AI console: no approved "
        "promotion put it there, so `registrar audit` reports it as unapproved_promotion; `registrar promote` is "
        "the guarded way)")
    story.promote("2")
    wait_until(lambda: model_state(api, model_id)["aliases"].get("production") == "2", timeout=timeout,
               what="`production` on version 2")

    say("someone deletes version 1 in the console")
    story.console_delete("1")

    say("the run's completion is delivered a second time")
    publisher.publish(PIPELINE_TOPIC, events[-1])
    say("a malformed message (not JSON)")
    malformed_id = publisher.publish(AUDIT_TOPIC, b"{oops: this is not json")
    wait_until(lambda: vertex_story_done(api, story, malformed_id, total_before), timeout=timeout,
               what="the whole story")


def snapshot(api: str, story: Story | VertexStory) -> dict[str, Any]:
    return {
        "kpis": get_json(api, "/kpis"),
        "models": get_json(api, "/models?page_size=200")["models"],
        "model": get_json(api, f"/models/{story.model_id}"),
        "training_run": get_json(api, f"/training-runs/{story.run_id}"),
        "quarantine": get_json(api, "/quarantine?limit=10")["messages"],
    }


def print_registry(state: Mapping[str, Any]) -> None:
    from registrar_cli.main import console as make_console
    from registrar_cli.main import kpi_table, models_table, quarantine_table, versions_table

    console = make_console()
    console.print(kpi_table(state["kpis"]))
    console.print(models_table(state["models"]))
    console.print(versions_table(state["model"]["versions"]))
    run = state["training_run"]
    registration = run.get("registration") or {}
    console.print(f"training run {run['training_run_id']}: {run['status']} metrics={run.get('metrics')} "
                  f"blessed={run.get('blessed')} registration={registration.get('status')} "
                  f"{registration.get('resource_name') or ''}".rstrip())
    console.print(quarantine_table(state["quarantine"]))


def run(env: Mapping[str, str], *, artifacts_root: Path, timeout: float = 90,
        say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Play the story on the stack described by `env` (local.env), wait for it, print and return the registry."""
    from registrar_cli.main import console as make_console

    console = make_console(stderr=True)
    say = say or (lambda message: console.print(f"[bold]→[/bold] {message}"))
    api = env["REGISTRAR_API_URL"].rstrip("/")
    story: Story | VertexStory
    if env.get("VERTEX_API_ENDPOINT"):
        story = VertexStory.new(env, artifacts_root)
        act_story(Publisher(env), story, api, timeout, say)
    else:
        story = Story.new(env["GOOGLE_CLOUD_PROJECT"], env.get("GOOGLE_CLOUD_REGION", "us-central1"), artifacts_root)
        publish_story(Publisher(env), story, api, timeout, say)
    state = snapshot(api, story)
    print_registry(state)
    print_console_url(api)
    return state


def print_console_url(api: str) -> None:
    """Where the operator console shows the same registry (the registry API serves it)."""
    from registrar_cli.main import console as make_console
    from registrar_cli.main import console_url

    make_console().print(f"Operator console: [bold]{console_url(api)}[/bold] (open it in a browser)", soft_wrap=True)
