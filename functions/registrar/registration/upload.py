"""Registering a succeeded training run's pushed model in Vertex AI Model Registry — exactly once.

Rules kept here (the predecessors broke each of them, see seeds/000 and seeds/003):
- the artifact is the *versioned* SavedModel directory `pushed_model/<version>/` holding `saved_model.pb` that the
  run's event names, never its parent and never a version picked from under it;
- the model id is derived from the model name in one place (`model_id_for`), and the display name is the run's
  model name;
- labels follow Vertex's rules (≤ 63 characters, lowercase letters, digits, `_`, `-`; keys start with a letter);
- the upload is idempotent: before uploading, look for a version already labelled with the run id (a crash
  between the upload and the Firestore commit, or a redelivered event, must not create a second version);
- the version id is the one Vertex assigns, used everywhere afterwards;
- a failure is recorded on the run with its reason and does not fail the run; `register` retries it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from registrar.kernel.errors import Contention, PermanentError, TransientError
from registrar.kernel.labels import (
    MAX_LABEL_LENGTH,
    RUN_ID_LABEL,
    SIMULATED_LABEL,
    sanitize_label_key,
    sanitize_label_value,
)
from registrar.kernel.logs import log
from registrar.kernel.paths import run_path
from registrar.kernel.ports import (
    ArtifactStore,
    ModelAlreadyExists,
    ModelRegistry,
    ModelRegistryWriter,
    ModelVersionInfo,
)
from registrar.kernel.store import update
from registrar.registration.commands import RecordRegistration
from registrar.registry.commands import RegisterUploadedVersion

# The Vertex AI prediction container recorded with each uploaded version, by retrieval algorithm (overridable per
# deployment: `Config.vertex_images`).
DEFAULT_IMAGES = {
    "brute_force": "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
    "scann": "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest",
}
REGISTRATION_LEASE = timedelta(minutes=10)
# What registering a run calls outside Firestore (every entry point that registers is wired for these).
CALLS = (ModelRegistry.list_versions, ModelRegistryWriter.find_version_by_label, ModelRegistryWriter.upload_version,
         ArtifactStore.exists, ArtifactStore.list_dirs, ArtifactStore.read_text)


def model_id_for(model_name: str) -> str:
    """The Vertex model id of a model name: deterministic, so every registration of a name lands in one model.
    Vertex model ids: lowercase letters, digits and hyphens, starting with a letter, at most 63 characters."""
    base = re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = f"m-{base}".rstrip("-")
    if base != model_name or len(base) > MAX_LABEL_LENGTH:
        # Different names must not collide after sanitising ("Recs_V1" vs "recs-v1").
        digest = hashlib.sha256(model_name.encode()).hexdigest()[:8]
        base = f"{base[:MAX_LABEL_LENGTH - 9].rstrip('-')}-{digest}"
    return base


def registration_labels(run: Mapping[str, Any]) -> dict[str, str]:
    """What a version's labels carry (kernel/labels.py): never its metrics, which labels cannot hold exactly."""
    labels = {
        RUN_ID_LABEL: run["training_run_id"],
        "model_type": run.get("model_type") or "unknown",
        "blessed": {True: "true", False: "false"}.get(run.get("blessed"), "unknown"),
        "managed_by": "registrar",
    }
    if run.get("retrieval_algorithm"):
        labels["retrieval_algorithm"] = run["retrieval_algorithm"]
    if run.get("simulated"):
        labels[SIMULATED_LABEL] = "true"
    return {sanitize_label_key(k): sanitize_label_value(v) for k, v in labels.items()}


def serving_image(retrieval_algorithm: str | None, overrides: Mapping[str, str] | None = None) -> str:
    """The Vertex prediction container of a version; `overrides` (algorithm → image) from the configuration."""
    algorithm = retrieval_algorithm or "brute_force"
    if algorithm not in DEFAULT_IMAGES:
        raise PermanentError(f"unknown retrieval algorithm {algorithm!r}", kind="invalid")
    return (overrides or {}).get(algorithm) or DEFAULT_IMAGES[algorithm]


def resolve_saved_model_dir(artifacts: ArtifactStore, pushed_model_uri: str) -> str:
    """The versioned directory `.../pushed_model/<version>/` holding `saved_model.pb`, exactly as the run's event
    names it. It is never guessed: the `pushed_model/` parent (what the predecessors registered, seeds/003) or a
    directory without `saved_model.pb` fails the registration with the reason, and `registrar register` retries
    it once the run names the right directory."""
    if not pushed_model_uri:
        raise PermanentError("the run has no pushed_model_uri artifact", kind="invalid")
    uri = pushed_model_uri.rstrip("/") + "/"
    try:
        if not uri.rstrip("/").rsplit("/", 1)[-1].isdigit():
            versions = sorted((d for d in artifacts.list_dirs(uri) if d.isdigit()), key=int)
            held = (f" (it holds {len(versions)} version directories, the last {', '.join(versions[-3:])})"
                    if versions else "")
            raise PermanentError(f"{uri} is not a versioned pushed_model/<version>/ directory{held}: the run's "
                                 "event must name the directory its Pusher wrote; no version is picked for it",
                                 kind="invalid")
        if not artifacts.exists(uri + "saved_model.pb"):
            raise PermanentError(f"no saved_model.pb in {uri}", kind="invalid")
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise PermanentError(f"cannot read {uri}: {exc}", kind="invalid") from exc
    return uri


def read_metrics(artifacts: ArtifactStore, metrics_uri: str | None) -> dict[str, float]:
    """The Trainer's `training_metrics.json` as the run's metrics, named as its event names them
    (pipeline/models/metrics.py `flat_metrics`): the `final` (validation) metrics as they are, the held-out `test`
    ones as `test_<name>` — a test RMSE never replaces the validation RMSE. Numbers only, exactly as written."""
    if not metrics_uri:
        return {}
    try:
        data = json.loads(artifacts.read_text(metrics_uri))
    except (FileNotFoundError, json.JSONDecodeError, RecursionError) as exc:
        raise PermanentError(f"cannot read metrics {metrics_uri}: {exc}", kind="invalid") from exc
    if not isinstance(data, dict):
        raise PermanentError(f"metrics {metrics_uri} is not a JSON object", kind="invalid")
    metrics: dict[str, float] = {}
    for section, prefix in (("final", ""), ("test", "test_"), ("test_metrics", "test_")):
        values = data.get(section)
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                key = name if not prefix or name.startswith(prefix) else f"{prefix}{name}"
                metrics.setdefault(key, float(value))
    return metrics


def _record_run_metrics(services, run_id: str, metrics: Mapping[str, float]) -> None:
    """Keep metrics read from the artifacts on the run, before its upload: a version takes its metrics from its
    run, whichever of our registration and its audit entry reaches the registry first."""

    def fill(run: dict[str, Any]) -> bool:
        if run.get("metrics") or not metrics:
            return False
        run["metrics"] = dict(metrics)
        return True

    update(services.store, run_path(run_id), fill)


def register_run(services, run_id: str, *, attempt_id: str | None = None) -> dict[str, Any]:
    """Register the run's pushed model; record the outcome on the run. Returns the run's registration doc.
    `attempt_id` names the attempt in the history (a retry request's id); by default the lease's claim number.

    Raises TransientError (after recording it as `pending` with the reason) so the message is redelivered.
    """
    run = services.store.get(run_path(run_id))
    if run is None:
        raise PermanentError(f"training run {run_id!r} is not in the registry", kind="invalid")
    if (run.get("registration") or {}).get("status") == "registered":
        return run["registration"]
    if run.get("status") != "SUCCEEDED":
        raise PermanentError(f"training run {run_id!r} has not succeeded (status {run.get('status')})", kind="invalid")
    claim, claim_number = _claim(services, run_id)
    if claim in ("registered", "failed"):
        return services.store.get(run_path(run_id))["registration"]
    if claim == "busy":
        # Another delivery holds the lease and is uploading now; come back later (Pub/Sub redelivers).
        raise TransientError(f"registration of run {run_id} is in progress elsewhere")
    attempt_id = attempt_id or f"claim-{claim_number}"
    try:
        info, artifact_uri = _upload_once(services, run)
    except PermanentError as error:
        _record(services, run_id, "failed", attempt_id, reason=error.reason)
        log("ERROR", f"registration of run {run_id} failed: {error.reason}", training_run_id=run_id)
        return services.store.get(run_path(run_id))["registration"]
    except TransientError as error:
        _record(services, run_id, "pending", attempt_id, reason=str(error))
        raise
    services.bus.handle(RegisterUploadedVersion(
        model_id=info.model_id, operation_id=f"registration:{run_id}", occurred_at=info.create_time, version=info,
        principal="registrar-registration", method="registration",
    ))
    _record(services, run_id, "registered", attempt_id, model_id=info.model_id, version_id=info.version_id,
            resource_name=info.resource_name, artifact_uri=artifact_uri)
    return services.store.get(run_path(run_id))["registration"]


def _claim(services, run_id: str, *, lease: timedelta = REGISTRATION_LEASE) -> tuple[str, int]:
    """Take the run's registration lease in a transaction: (`claimed`, its number), `busy` (another invocation holds
    an unexpired lease), `registered`, or `failed` (final until someone asks again: a retry request makes it
    `pending`; a delivery that read `pending` before the failure was recorded must not upload again). Concurrent deliveries of one completion must not each look for the version,
    find none, and upload; the lease serialises them. A holder that dies lets the lease expire, and the next one
    finds the version by its run label if the upload had happened. Claims are numbered, so each attempt has a
    deterministic id."""
    for attempt in range(1, 6):
        uow = services.store.unit_of_work()
        try:
            with uow:
                run = uow.get(run_path(run_id)) or {}
                registration = dict(run.get("registration") or {})
                if registration.get("status") in ("registered", "failed"):
                    return registration["status"], 0
                now = services.now()
                lease_until = registration.get("lease_until")
                if registration.get("status") == "registering" and lease_until is not None and lease_until > now:
                    return "busy", 0
                number = int(registration.get("claims", 0)) + 1
                registration.update(status="registering", claims=number, claimed_by=f"claim-{number}",
                                    lease_until=now + lease)
                run["registration"] = registration
                uow.set(run_path(run_id), run)
                uow.commit()
                return "claimed", number
        except Contention:
            if attempt == 5:
                raise
            time.sleep(0.05 * attempt * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def _upload_once(services, run: Mapping[str, Any]) -> tuple[ModelVersionInfo, str]:
    writer: ModelRegistryWriter = services.registry
    if not isinstance(writer, ModelRegistryWriter):
        # Recorded on the run as failed (and retryable with `register`), rather than retried until dead-lettered.
        raise PermanentError("registration is not configured: no Vertex AI endpoint (set VERTEX_API_ENDPOINT locally)",
                             kind="not_configured")
    run_id = run["training_run_id"]
    if not run.get("model_name"):
        raise PermanentError(f"training run {run_id!r} names no model", kind="invalid")
    model_id = model_id_for(run["model_name"])
    existing = writer.find_version_by_label(model_id, RUN_ID_LABEL, sanitize_label_value(run_id))
    if existing is not None:
        return existing, existing.artifact_uri
    artifact_uri = resolve_saved_model_dir(services.artifacts, (run.get("artifacts") or {}).get("pushed_model_uri", ""))
    run = dict(run)
    if not run.get("metrics"):
        run["metrics"] = read_metrics(services.artifacts, (run.get("artifacts") or {}).get("metrics_uri"))
        _record_run_metrics(services, run_id, run["metrics"])
    upload = dict(
        display_name=run["model_name"],
        artifact_uri=artifact_uri,
        labels=registration_labels(run),
        serving_image=serving_image(run.get("retrieval_algorithm"), services.config.vertex_images),
        description=f"Training run {run_id} ({run.get('pipeline_job_name') or 'pipeline'})",
    )
    has_versions = bool(services.registry.list_versions(model_id))
    try:
        info = writer.upload_version(**upload, **({"parent_model_id": model_id} if has_versions else {"model_id": model_id}))
    except ModelAlreadyExists:  # two first registrations raced: the model exists now, add a version to it
        info = writer.upload_version(**upload, parent_model_id=model_id)
    return info, artifact_uri


def _record(services, run_id: str, status: str, attempt_id: str, **fields) -> None:
    services.bus.handle(RecordRegistration(training_run_id=run_id, status=status, occurred_at=services.now(),
                                           attempt_id=attempt_id, **fields))
