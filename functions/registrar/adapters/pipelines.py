"""Pipeline runners: how a training run's pipeline is started (the `PipelineRunner` port).

- `VertexPipelineRunner`: a Vertex AI PipelineJob from the compiled pipeline template (`aiplatform_v1`);
- `LocalPipelineRunner`: the local TFX runner (`python -m pipeline.runners.local`) as a detached process;
- `EventEmittingRunner`: no pipeline at all; publishes the PipelineRunEvents a run would (RUNNING, then SUCCEEDED
  or FAILED) to `pipeline-events`, for end-to-end tests and demos where a TFX run is too slow.

`registrar.bootstrap` picks one (REGISTRAR_PIPELINE_RUNNER: vertex | local | events). Every runner is idempotent
on the training run id: the pipeline job id is derived from it (`pipeline_job_id`), so submitting a run twice
starts one pipeline. Run control: `cancel(training_run)` stops a run (Vertex: PipelineJob cancel; local: the
runner process) and `log_location(training_run)` says where its logs are. Heavy clients are imported only when a
runner first needs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from registrar.adapters.google_api import gapic_client, is_retry_worthy
from registrar.kernel.errors import PermanentError, TransientError
from registrar.kernel.labels import sanitize_label_value
from registrar.kernel.ports import PipelineRunner
from registrar.kernel.run_config import RUN_RESOLVED, RUN_SCOPED

_HERE = Path(__file__).resolve()
ROOT = _HERE.parents[3] if len(_HERE.parents) > 3 else _HERE.parents[-1]  # the repository (local runs only)
EVENTS_TOPIC = "pipeline-events"
EVENT_SCHEMA = "registrar.pipeline-run-event.v1"
RUN_ID_LABEL = "registrar-run-id"
# Vertex AI: "This value should be less than 128 characters, and valid characters are /[a-z][0-9]-/"
# (projects.locations.pipelineJobs.create, pipelineJobId).
MAX_JOB_ID = 127
_JOB_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,126}$")
_EVENT_RUN_ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

# Command-line options of `pipeline.runners.local` that a training config may set (config key → option).
LOCAL_RUNNER_OPTIONS = {
    "model_type": "--model-type",
    "interactions": "--interactions",
    "data_root": "--data-root",
    "seed": "--seed",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "embedding_dim": "--embedding-dim",
    "learning_rate": "--learning-rate",
    "early_stopping_patience": "--early-stopping-patience",
    "recall_threshold": "--recall-threshold",
    "rmse_threshold": "--rmse-threshold",
    "recall_change_tolerance": "--recall-change-tolerance",
    "rmse_change_tolerance": "--rmse-change-tolerance",
    "retrieval_algorithm": "--retrieval-algorithm",
    "gpu_count": "--gpu-count",
    "baseline_model_uri": "--baseline-model-uri",
    "baseline_version": "--baseline-version",
}
# Values the registry resolves for each run (the baseline: the version holding `production` / `default` when the
# run starts) and stores on the training run itself; they override the frozen config's (kernel/run_config.py).

LOCAL_RUNNER_CHOICES = {"model_type": ("retrieval", "ranking", "multitask"),
                        "retrieval_algorithm": ("auto", "brute_force", "scann")}


class PipelineConfigError(PermanentError, ValueError):
    """The run cannot be submitted as configured (a template parameter without a value, no pipeline root, a bad
    run id): retrying cannot help."""

    def __init__(self, reason: str):
        super().__init__(reason, kind="invalid")


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers


def run_id_of(training_run: Mapping[str, Any]) -> str:
    run_id = training_run.get("training_run_id")
    if not isinstance(run_id, str) or not run_id:
        raise PipelineConfigError("the training run has no training_run_id")
    return run_id


def training_config(training_run: Mapping[str, Any]) -> dict[str, Any]:
    """The run's frozen training config (`training_config`), with the run's own model type as a fallback and the
    values resolved for the run (`RUN_RESOLVED`) over it."""
    config = dict(training_run.get("training_config") or training_run.get("config") or {})
    if training_run.get("model_type") and "model_type" not in config:
        config["model_type"] = training_run["model_type"]
    config.update({k: training_run[k] for k in RUN_RESOLVED if training_run.get(k) not in (None, "")})
    return config


def pipeline_job_id(training_run_id: str) -> str:
    """The Vertex PipelineJob id of a run (lowercase letters, digits, '-', starting with a letter, < 128).

    A run id that is already valid is used as it is (the training run id is the PipelineJob id); any other is
    slugged and suffixed with a digest of the original, so two run ids never share a job id."""
    if _JOB_ID_RE.match(training_run_id):
        return training_run_id
    slug = re.sub(r"[^a-z0-9-]+", "-", training_run_id.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"run-{slug}".rstrip("-")
    digest = hashlib.sha256(training_run_id.encode()).hexdigest()[:10]
    return f"{slug[:MAX_JOB_ID - len(digest) - 1].rstrip('-')}-{digest}"


def pipeline_labels(training_run: Mapping[str, Any]) -> dict[str, str]:
    labels = {RUN_ID_LABEL: sanitize_label_value(run_id_of(training_run))}
    if training_run.get("model_name"):
        labels["registrar-model"] = sanitize_label_value(training_run["model_name"])
    if training_run.get("schedule_id"):
        labels["registrar-schedule-id"] = sanitize_label_value(training_run["schedule_id"])
    return labels


def template_parameters(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The runtime parameters a compiled pipeline declares: name → its input definition."""
    spec = template.get("pipelineSpec", template)
    return dict(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}))


def _typed(name: str, value: Any, definition: Mapping[str, Any]) -> Any:
    kind = (definition.get("parameterType") or definition.get("type") or "STRING").upper()
    try:
        if kind in ("NUMBER_INTEGER", "INT"):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError(f"{value!r} is not an integer")
            return int(float(value))
        if kind in ("NUMBER_DOUBLE", "DOUBLE"):
            if isinstance(value, bool):
                raise ValueError(f"{value!r} is not a number")
            return float(value)
        if kind == "BOOLEAN":
            if not isinstance(value, bool):
                raise ValueError(f"{value!r} is not a boolean")
            return value
        if kind == "STRING":
            return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise PipelineConfigError(f"pipeline parameter {name} ({kind}): {exc}") from None
    return value  # LIST / STRUCT: as given


# Template parameters that name the run itself. They come from the run, never from the template's defaults or the
# frozen config: a default would make every scheduled run report the same run id and push to the same place.
RUN_SCOPED_PARAMETERS = RUN_SCOPED


def _unix_seconds(value: Any) -> int | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        return None  # a naive time has no single instant
    return int(moment.timestamp())


VERSIONS_PER_SECOND = 1_000_000


def model_version_of(training_run: Mapping[str, Any]) -> int | None:
    """The version directory a run pushes under (`pushed_model/<version>/`, a number, as TF Serving wants it): the
    run's own `model_version` if it has one, else `unix seconds of its slot (scheduled runs) or creation × 10⁶ +
    its run number mod 10⁶`. Seconds alone collide for two runs of one model in the same second; run numbers are
    handed out one at a time per model name, so runs of one second differ, and versions still sort like the times
    (and stay below 2⁵³, exact in JSON). A run without a number takes six digits of its id's hash instead. Read
    from the run's document, so a resubmission of the run pushes to the same place."""
    version = training_run.get("model_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > 0:
        return version
    for key in ("slot", "created_at"):
        seconds = _unix_seconds(training_run.get(key))
        if seconds is not None:
            number = training_run.get("run_number")
            if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
                number = int(hashlib.sha256(run_id_of(training_run).encode()).hexdigest(), 16)
            return seconds * VERSIONS_PER_SECOND + number % VERSIONS_PER_SECOND
    return None


def pipeline_parameters(training_run: Mapping[str, Any], declared: Mapping[str, Mapping[str, Any]],
                        compiled: Mapping[str, Any] = ()) -> dict[str, Any]:
    """Values for the template's declared parameters: the run's id, model name and model version
    (`RUN_SCOPED_PARAMETERS`), and its frozen config (model type, query, hyperparameters, thresholds …), typed as
    declared. Only declared parameters are passed (Vertex refuses others). A declared run-scoped parameter the run
    cannot supply is an error, as is any other declared parameter without a value, a default, or a value compiled
    into the template (`compiled`)."""
    run_id = run_id_of(training_run)
    config = {k: v for k, v in training_config(training_run).items() if k not in RUN_SCOPED_PARAMETERS}
    available: dict[str, Any] = {**config, "training_run_id": run_id, "model_name": training_run.get("model_name"),
                                 "model_version": model_version_of(training_run)}
    values: dict[str, Any] = {}
    for name, definition in declared.items():
        if available.get(name) is not None:
            values[name] = _typed(name, available[name], definition)
        elif name in RUN_SCOPED_PARAMETERS:
            raise PipelineConfigError(f"the pipeline template takes the run's {name}, which the training run {run_id} "
                                      f"does not carry")
        elif "defaultValue" not in definition and not definition.get("isOptional") and name not in compiled:
            raise PipelineConfigError(f"the pipeline template needs parameter {name!r}, which the training run "
                                      f"{run_id} does not carry (add it to its training config)")
    return values


def pipeline_job_body(template: Mapping[str, Any], training_run: Mapping[str, Any], *, pipeline_root: str | None,
                      service_account: str | None = None, network: str | None = None) -> dict[str, Any]:
    """The PipelineJob (REST JSON, camelCase) that runs `template` for `training_run`."""
    template = json.loads(json.dumps(template))  # a deep copy that is also plain JSON
    if "pipelineSpec" in template:
        spec = template["pipelineSpec"]
        runtime = template.get("runtimeConfig") or {}
    else:
        spec, runtime = template, {}
    root = pipeline_root or spec.get("defaultPipelineRoot") or runtime.get("gcsOutputDirectory")
    if not root:
        raise PipelineConfigError("no pipeline root: set REGISTRAR_PIPELINE_ROOT (gs://bucket/pipeline_root)")
    run_id = run_id_of(training_run)
    declared = template_parameters({"pipelineSpec": spec})
    legacy = _schema_version(spec) <= (2, 0, 0)
    compiled = dict(runtime.get("parameters" if legacy else "parameterValues") or {})
    values = pipeline_parameters(training_run, declared, compiled)
    runtime_config: dict[str, Any] = {"gcsOutputDirectory": root}
    if legacy:
        runtime_config["parameters"] = {**compiled, **{name: _legacy_value(v) for name, v in values.items()}}
    else:
        runtime_config["parameterValues"] = {**compiled, **values}
    model = training_run.get("model_name") or "model"
    body: dict[str, Any] = {
        "displayName": f"registrar-{model}-{run_id}"[:128],
        "pipelineSpec": spec,
        "labels": {**{k: sanitize_label_value(v) for k, v in (template.get("labels") or {}).items()},
                   **pipeline_labels(training_run)},
        "runtimeConfig": runtime_config,
    }
    if service_account:
        body["serviceAccount"] = service_account
    if network:
        body["network"] = network
    return body


def _schema_version(spec: Mapping[str, Any]) -> tuple[int, ...]:
    parts = re.findall(r"\d+", str(spec.get("schemaVersion", "2.0.0")))
    return tuple(int(p) for p in parts[:3]) or (2, 0, 0)


def _legacy_value(value: Any) -> dict[str, Any]:
    """`RuntimeConfig.parameters` (schema ≤ 2.0.0) takes typed Values."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value if isinstance(value, str) else json.dumps(value, sort_keys=True)}


def local_runner_command(python: str, training_run: Mapping[str, Any], output: Path) -> list[str]:
    """`python -m pipeline.runners.local …` for a run: its id and model name, and every option its frozen config
    sets."""
    run_id = run_id_of(training_run)
    config = training_config(training_run)
    command = [python, "-m", "pipeline.runners.local", "--output", str(output), "--training-run-id", run_id]
    if training_run.get("model_name"):
        command += ["--model-name", str(training_run["model_name"])]
    for key, option in LOCAL_RUNNER_OPTIONS.items():
        value = config.get(key)
        if value is None or isinstance(value, dict | list):
            continue
        if key in LOCAL_RUNNER_CHOICES and value not in LOCAL_RUNNER_CHOICES[key]:
            # the runner would exit on its argument parser without publishing any event
            raise PipelineConfigError(f"training config {key}={value!r}: the local runner takes one of "
                                      f"{', '.join(LOCAL_RUNNER_CHOICES[key])}")
        command += [option, str(value).lower() if isinstance(value, bool) else str(value)]
    return command + ["--plain"]


def sanitise_run_id(value: str) -> str:
    """As `pipeline.events.sanitise_run_id`: the run id the pipeline puts in its events."""
    value = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
    if not value or not value[0].isalpha():
        value = "run-" + value
    return value[:63].rstrip("-")


def event_id(training_run_id: str, state: str) -> str:
    """As `pipeline.events.event_id`: a re-publish of the same fact carries the same id."""
    return hashlib.sha256(f"{training_run_id}:{state}".encode()).hexdigest()[:32]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def pipeline_run_event(*, training_run_id: str, model_name: str, model_type: str | None, pipeline_job_name: str,
                       state: str, occurred_at: datetime, stage: str | None = None,
                       artifacts: Mapping[str, str] | None = None, metrics: Mapping[str, float] | None = None,
                       blessed: bool | None = None, retrieval_algorithm: str | None = None,
                       error_message: str | None = None,
                       epochs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A PipelineRunEvent (schemas/events/pipeline-run-event.v1.json) shaped as `pipeline.events.build_event`
    shapes it."""
    event: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        "event_id": event_id(training_run_id, state),
        "training_run_id": training_run_id,
        "model_name": model_name,
        "pipeline_job_name": pipeline_job_name,
        "state": state,
        "stage": stage,
        "occurred_at": _rfc3339(occurred_at),
        "artifacts": dict(artifacts or {}),
        "metrics": {k: float(v) for k, v in (metrics or {}).items()},
        "blessed": blessed,
        "retrieval_algorithm": retrieval_algorithm,
        "error_message": error_message[:4096] if error_message else None,
    }
    if model_type:
        event["model_type"] = model_type
    if epochs:
        event["epochs"] = epochs
    return event


# ---------------------------------------------------------------------------------------------------------------
# Vertex AI Pipelines


def load_template(uri: str) -> dict[str, Any]:
    """The compiled pipeline JSON from `gs://…` (Cloud Storage) or a local path."""
    if uri.startswith("gs://"):
        from google.cloud import storage

        bucket, _, blob = uri[len("gs://"):].partition("/")
        text = storage.Client().bucket(bucket).blob(blob).download_as_text()
    else:
        text = Path(uri.removeprefix("file://")).read_text()
    template = json.loads(text)
    if not isinstance(template, dict) or not (template.get("pipelineSpec") or template.get("pipelineInfo")):
        raise PipelineConfigError(f"{uri} is not a compiled pipeline (no pipelineSpec)")
    return template


class VertexPipelineRunner(PipelineRunner):
    """Submits a Vertex AI PipelineJob with `aiplatform_v1.PipelineServiceClient`; the job id is the run's
    `pipeline_job_id`, so a second submission finds the first job (ALREADY_EXISTS) and returns its name."""

    def __init__(self, project: str, location: str, template_uri: str, *, pipeline_root: str | None = None,
                 service_account: str | None = None, network: str | None = None, api_endpoint: str | None = None,
                 template_loader: Callable[[str], dict[str, Any]] = load_template, timeout: float = 60.0) -> None:
        self.project = project
        self.location = location
        self.template_uri = template_uri
        self.pipeline_root = pipeline_root
        self.service_account = service_account
        self.network = network
        self.api_endpoint = api_endpoint
        self.template_loader = template_loader
        self.timeout = timeout
        self._template: dict[str, Any] | None = None
        self._client = None

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def client(self):
        if self._client is None:
            from google.cloud import aiplatform_v1

            self._client = gapic_client(aiplatform_v1.PipelineServiceClient, self.api_endpoint,
                                        f"{self.location}-aiplatform.googleapis.com")
        return self._client

    def template(self) -> dict[str, Any]:
        if self._template is None:
            if not self.template_uri:
                raise PipelineConfigError("no pipeline template: set REGISTRAR_PIPELINE_TEMPLATE "
                                          "(gs://…/pipeline.json)")
            from google.api_core import exceptions as gexc

            try:
                self._template = self.template_loader(self.template_uri)
            except PipelineConfigError:
                raise
            except (FileNotFoundError, gexc.NotFound, gexc.Forbidden, ValueError) as exc:
                raise PipelineConfigError(f"cannot use the pipeline template {self.template_uri}: {exc}") from exc
            except Exception as exc:
                raise TransientError(f"reading the pipeline template {self.template_uri} failed: {exc}") from exc
        return self._template

    def build_job(self, training_run: Mapping[str, Any]):
        from google.cloud import aiplatform_v1
        from google.protobuf import json_format

        body = pipeline_job_body(self.template(), training_run, pipeline_root=self.pipeline_root,
                                 service_account=self.service_account, network=self.network)
        job = aiplatform_v1.PipelineJob()
        json_format.ParseDict(body, aiplatform_v1.PipelineJob.pb(job))
        return job

    def submit(self, training_run: Mapping[str, Any]) -> str:
        from google.api_core import exceptions as gexc

        job_id = pipeline_job_id(run_id_of(training_run))
        name = f"{self.parent}/pipelineJobs/{job_id}"
        job = self.build_job(training_run)
        try:
            created = self.client.create_pipeline_job(parent=self.parent, pipeline_job=job, pipeline_job_id=job_id,
                                                      timeout=self.timeout)
            return created.name
        except gexc.Conflict as exc:  # ALREADY_EXISTS (a plain 409 Conflict over REST); ABORTED is retry-worthy
            if isinstance(exc, gexc.Aborted):
                raise TransientError(f"creating PipelineJob {name} failed: {exc}") from exc
        except (gexc.InvalidArgument, gexc.FailedPrecondition, gexc.BadRequest) as exc:
            raise PipelineConfigError(f"Vertex AI refused PipelineJob {name}: {exc.message}") from exc
        except Exception as exc:
            if is_retry_worthy(exc):
                raise TransientError(f"creating PipelineJob {name} failed: {exc}") from exc
            raise
        try:  # it exists: the first submission created it
            return self.client.get_pipeline_job(name=name, timeout=self.timeout).name
        except gexc.NotFound as exc:
            raise TransientError(f"PipelineJob {name} was reported to exist but cannot be read") from exc
        except Exception as exc:
            if is_retry_worthy(exc):
                raise TransientError(f"reading PipelineJob {name} failed: {exc}") from exc
            raise

    def job_name(self, training_run: Mapping[str, Any]) -> str:
        return f"{self.parent}/pipelineJobs/{pipeline_job_id(run_id_of(training_run))}"

    def cancel(self, training_run: Mapping[str, Any]) -> bool:
        """Asks Vertex AI to cancel the run's PipelineJob (asynchronous: the job ends CANCELLED and the exit handler
        publishes that). False when there is no such job or it has already ended."""
        from google.api_core import exceptions as gexc

        name = self.job_name(training_run)
        try:
            self.client.cancel_pipeline_job(name=name, timeout=self.timeout)
            return True
        except (gexc.NotFound, gexc.FailedPrecondition):
            return False
        except Exception as exc:
            if is_retry_worthy(exc):
                raise TransientError(f"cancelling PipelineJob {name} failed: {exc}") from exc
            raise

    def log_location(self, training_run: Mapping[str, Any]) -> str:
        """Cloud Logging, filtered to the run's PipelineJob (its tasks and the training job it started)."""
        job_id = pipeline_job_id(run_id_of(training_run))
        query = (f'resource.type="aiplatform.googleapis.com/PipelineJob"\n'
                 f'resource.labels.pipeline_job_id="{job_id}"')
        return (f"https://console.cloud.google.com/logs/query;query={quote(query, safe='')}"
                f"?project={quote(self.project, safe='')}")


# ---------------------------------------------------------------------------------------------------------------
# The local TFX runner


DEFAULT_RUNS_DIR = ROOT / ".registrar" / "runs"


class LocalPipelineRunner(PipelineRunner):
    """Starts `python -m pipeline.runners.local` in the background, one per run: the marker file
    `<runs_dir>/<job id>.json` is created exclusively before the process starts, so a second submission finds it
    and starts nothing. The run's output and log are under `<runs_dir>/<job id>/`; the runner publishes its
    PipelineRunEvent to `pipeline-events` on the Pub/Sub emulator (PUBSUB_EMULATOR_HOST)."""

    def __init__(self, project: str, *, python: str | os.PathLike | None = None,
                 runs_dir: str | os.PathLike | None = None, repo: Path = ROOT,
                 env: Mapping[str, str] | None = None) -> None:
        self.project = project
        self.python = str(python or repo / ".venv-pipeline" / "bin" / "python")
        self.runs_dir = Path(runs_dir) if runs_dir else DEFAULT_RUNS_DIR
        self.repo = repo
        self.env = dict(env or {})

    def marker_path(self, job_id: str) -> Path:
        return self.runs_dir / f"{job_id}.json"

    @staticmethod
    def job_name(job_id: str) -> str:
        return f"local/{job_id}"

    def claim(self, training_run: Mapping[str, Any]) -> tuple[bool, Path, dict[str, Any]]:
        """Create the run's marker if nobody has: (created, path, marker)."""
        job_id = pipeline_job_id(run_id_of(training_run))
        path = self.marker_path(job_id)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                return False, path, json.loads(path.read_text() or "{}")
            except ValueError:
                return False, path, {}  # being written by the submission that created it
        marker = {"training_run_id": run_id_of(training_run), "pipeline_job_id": job_id,
                  "pipeline_job_name": self.job_name(job_id), "output": str(self.runs_dir / job_id),
                  "submitted_at": _rfc3339(datetime.now(timezone.utc))}
        with os.fdopen(fd, "w") as handle:
            json.dump(marker, handle, indent=2, sort_keys=True)
        return True, path, marker

    def process_env(self) -> dict[str, str]:
        """The pipeline process's environment: `env` (the wiring passes this process's own) with the project and
        the repository on PYTHONPATH."""
        env = dict(self.env)
        env["GOOGLE_CLOUD_PROJECT"] = self.project
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.repo), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def submit(self, training_run: Mapping[str, Any]) -> str:
        created, path, marker = self.claim(training_run)
        job_id = pipeline_job_id(run_id_of(training_run))
        if not created:
            return marker.get("pipeline_job_name") or self.job_name(job_id)
        output = Path(marker["output"])
        command = local_runner_command(self.python, training_run, output)
        try:
            output.mkdir(parents=True, exist_ok=True)
            with open(output / "runner.log", "ab") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           cwd=self.repo, env=self.process_env(), start_new_session=True)
        except OSError as exc:
            path.unlink(missing_ok=True)  # nothing started: a retry may try again
            raise TransientError(f"starting the local pipeline runner ({self.python}) failed: {exc}") from exc
        marker.update(pid=process.pid, command=command)
        path.write_text(json.dumps(marker, indent=2, sort_keys=True))
        return marker["pipeline_job_name"]

    def _marker(self, training_run: Mapping[str, Any]) -> dict[str, Any]:
        path = self.marker_path(pipeline_job_id(run_id_of(training_run)))
        try:
            return json.loads(path.read_text() or "{}")
        except (FileNotFoundError, ValueError):
            return {}

    @staticmethod
    def _running(pid: int, output: str) -> bool:
        """The run's own runner process is alive (not a zombie, not another process that got the pid)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError, OSError):
            return False
        return state != "Z" and b"pipeline.runners.local" in cmdline and output.encode() in cmdline

    def cancel(self, training_run: Mapping[str, Any], grace_seconds: float = 60.0) -> bool:
        """Stops the run's runner process: SIGTERM to its process group (it ends the run CANCELLED and publishes
        that), SIGKILL after `grace_seconds`. False when the run is not running here."""
        marker = self._marker(training_run)
        pid, output = marker.get("pid"), marker.get("output", "")
        if not isinstance(pid, int) or not self._running(pid, output):
            return False
        for sig, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(pid, sig)  # started with start_new_session: its group is its pid
            except ProcessLookupError:
                return True
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not self._running(pid, output):
                    return True
                time.sleep(0.2)
        return not self._running(pid, output)

    def log_location(self, training_run: Mapping[str, Any]) -> str:
        """The run's log file (the runner's output, TFX's and the trainer's included)."""
        output = self._marker(training_run).get("output") or str(self.runs_dir /
                                                                 pipeline_job_id(run_id_of(training_run)))
        return f"file://{Path(output).resolve() / 'runner.log'}"

    def log_tail(self, training_run: Mapping[str, Any], lines: int) -> list[str] | None:
        """The last `lines` lines of the run's log file ([] before the run has written any)."""
        path = Path(self.log_location(training_run).removeprefix("file://"))
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                end = handle.tell()
                # Read back from the end until the block holds enough lines (logs can be large).
                block, size = b"", 8192
                while True:
                    start = max(0, end - size)
                    handle.seek(start)
                    block = handle.read(end - start)
                    if start == 0 or block.count(b"\n") > lines:
                        break
                    size *= 4
        except FileNotFoundError:
            return []
        text = block.decode("utf-8", errors="replace").splitlines()
        return text[-lines:] if lines > 0 else []


# ---------------------------------------------------------------------------------------------------------------
# Events only


class EventEmittingRunner(PipelineRunner):
    """Publishes RUNNING and then SUCCEEDED (with artifact URIs and metrics) or FAILED (with an error message) for
    a run, as our PipelineRunEvent, to `pipeline-events`; no pipeline runs. Event ids are deterministic, so a
    second submission republishes the same facts and consumers keep one of each.

    `outcome` is "succeeded" / "failed", or a function of the training run returning one. With a local
    `artifacts_root`, SUCCEEDED also writes the artifacts it names (a placeholder `saved_model.pb` and
    `training_metrics.json`), so registration can find them. Its events say `simulated`, and so do its runs and
    the versions they register."""

    simulated = True

    def __init__(self, project: str, *, topic: str = EVENTS_TOPIC,
                 outcome: str | Callable[[Mapping[str, Any]], str] = "succeeded",
                 artifacts_root: str | None = None, metrics: Mapping[str, float] | None = None,
                 error_message: str = "simulated failure (EventEmittingRunner)",
                 publish: Callable[[str, dict[str, Any]], str] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.project = project
        self.topic = topic
        self.outcome = outcome
        root = artifacts_root or str(DEFAULT_RUNS_DIR / "events")
        self.artifacts_root = root if "://" in root else str(Path(root).resolve())
        self.metrics = dict(metrics if metrics is not None else {"recall_at_100": 0.42, "loss": 1.25})
        self.error_message = error_message
        self._publish = publish
        self.clock = clock
        self._publisher = None
        self._lock = threading.Lock()
        self._submitted: set[str] = set()

    def outcome_for(self, training_run: Mapping[str, Any]) -> str:
        outcome = self.outcome(training_run) if callable(self.outcome) else self.outcome
        outcome = str(outcome).lower()
        if outcome not in ("succeeded", "failed"):
            raise PipelineConfigError(f"EventEmittingRunner outcome must be succeeded or failed, got {outcome!r}")
        return outcome

    def artifacts_for(self, run_id: str, version: int) -> dict[str, str]:
        base = self.artifacts_root.rstrip("/") + f"/{run_id}"
        return {"pipeline_root": f"{base}/pipeline_root",
                "pushed_model_uri": f"{base}/pushed_model/{version}/",
                "metrics_uri": f"{base}/model_run/training_metrics.json"}

    def events_for(self, training_run: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The events a run of `training_run` would publish, in order (pure apart from the clock)."""
        run_id = sanitise_run_id(run_id_of(training_run))
        if not _EVENT_RUN_ID_RE.match(run_id):
            raise PipelineConfigError(f"training run id {run_id!r} cannot be carried by a PipelineRunEvent")
        model_name = str(training_run.get("model_name") or "")
        config = training_config(training_run)
        model_type = training_run.get("model_type") or config.get("model_type")
        job_name = self.job_name(training_run)
        started = self.clock()
        common = {"training_run_id": run_id, "model_name": model_name, "model_type": model_type,
                  "pipeline_job_name": job_name}
        running = pipeline_run_event(**common, state="RUNNING", occurred_at=started, stage="CsvExampleGen")
        if self.outcome_for(training_run) == "failed":
            final = pipeline_run_event(**common, state="FAILED", occurred_at=self.clock(), stage="Trainer",
                                       error_message=self.error_message)
            return [{**event, "simulated": True} for event in (running, final)]
        algorithm = config.get("retrieval_algorithm")
        if model_type == "retrieval" and algorithm not in ("brute_force", "scann"):
            algorithm = "brute_force"
        final = pipeline_run_event(
            **common, state="SUCCEEDED", occurred_at=self.clock(), stage="Pusher",
            artifacts=self.artifacts_for(run_id, int(started.timestamp())), metrics=self.metrics, blessed=True,
            retrieval_algorithm=algorithm if model_type == "retrieval" else None,
            epochs=self.epochs_for(config))
        return [{**event, "simulated": True} for event in (running, final)]

    def job_name(self, training_run: Mapping[str, Any]) -> str:
        return f"events/{pipeline_job_id(run_id_of(training_run))}"

    def epochs_for(self, config: Mapping[str, Any]) -> list[dict[str, Any]]:
        """As many made-up epochs as the config's `epochs` (3 by default, at most 200), losses falling towards the
        run's final metrics."""
        count = config.get("epochs", 3)
        count = min(max(count, 1), 200) if isinstance(count, int) and not isinstance(count, bool) else 3
        final_loss = float(self.metrics.get("loss", 1.0))
        epochs = []
        for epoch in range(1, count + 1):
            remaining = count - epoch
            validation = {"loss": round(final_loss * (1 + 0.5 * remaining / count), 6)}
            validation.update({name: float(value) for name, value in self.metrics.items() if name != "loss"
                               and epoch == count})
            epochs.append({"epoch": epoch, "train": {"loss": round(final_loss * (0.9 + 0.5 * remaining / count), 6)},
                           "validation": validation})
        return epochs

    def write_artifacts(self, event: Mapping[str, Any]) -> None:
        artifacts = event.get("artifacts") or {}
        if not artifacts or "://" in self.artifacts_root:
            return  # only local roots are written
        pushed = Path(artifacts["pushed_model_uri"])
        pushed.mkdir(parents=True, exist_ok=True)
        (pushed / "saved_model.pb").write_bytes(b"")
        metrics = Path(artifacts["metrics_uri"])
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps({"final": event.get("metrics") or {}}, sort_keys=True))

    def publish(self, event: dict[str, Any]) -> str:
        if self._publish is not None:
            return self._publish(self.topic, event)
        from google.api_core import exceptions as gexc

        with self._lock:
            if self._publisher is None:
                from google.cloud import pubsub_v1

                self._publisher = pubsub_v1.PublisherClient()
        future = self._publisher.publish(self._publisher.topic_path(self.project, self.topic),
                                         json.dumps(event, sort_keys=True).encode(),
                                         event_id=event["event_id"], schema=event["schema"])
        try:
            return future.result(timeout=60)
        except (gexc.GoogleAPICallError, TimeoutError) as exc:
            raise TransientError(f"publishing {event['state']} for {event['training_run_id']} failed: {exc}") from exc

    def cancel(self, training_run: Mapping[str, Any]) -> bool:
        """Nothing runs: a submitted run has already published its end."""
        return False

    def log_location(self, training_run: Mapping[str, Any]) -> str | None:
        return None

    def submit(self, training_run: Mapping[str, Any]) -> str:
        run_id = run_id_of(training_run)
        if run_id not in self._submitted:
            for event in self.events_for(training_run):
                if event["state"] == "SUCCEEDED":
                    self.write_artifacts(event)
                self.publish(event)
            self._submitted.add(run_id)
        return self.job_name(training_run)


__all__ = ["EventEmittingRunner", "LocalPipelineRunner", "PipelineConfigError", "VertexPipelineRunner",
           "event_id", "local_runner_command", "model_version_of", "pipeline_job_body", "pipeline_job_id",
           "pipeline_parameters", "pipeline_run_event"]
