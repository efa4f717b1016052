"""The configuration of a Registrar instance: what its environment variables say, parsed in one place.

`registrar.bootstrap` passes the process environment (it is the only module that reads it); everything else is
given what it needs from here, through the services.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

# The issuer of the test tokens the local stack signs (localcloud/identity); accepted only in local mode.
LOCAL_ISSUER = "registrar-local"


@dataclasses.dataclass(frozen=True)
class PipelineSettings:
    """How training runs are submitted: `runner` is vertex | local | events (simulated runs, only when asked for)
    | none (no runner is configured: submissions fail with how to configure one)."""

    runner: str = "none"
    template: str = ""
    pipeline_root: str | None = None
    service_account: str | None = None
    network: str | None = None
    api_endpoint: str | None = None
    events_outcome: str = "succeeded"
    events_artifacts_root: str | None = None
    local_python: str | None = None
    local_runs_dir: str | None = None


@dataclasses.dataclass(frozen=True)
class Config:
    project: str | None = None
    region: str = "us-central1"
    firestore_database: str = "(default)"
    events_topic: str = "registry-events"
    ledger_ttl: timedelta = timedelta(days=30)
    vertex_endpoint: str | None = None
    cloud_run_endpoint: str | None = None
    scheduler_endpoint: str | None = None
    # Cloud Logging (the Admin Activity audit log the reconciler reads); locally the Vertex AI emulator serves it.
    logging_endpoint: str | None = None
    in_cloud: bool = False  # running as a Cloud Function / Cloud Run service (K_SERVICE is set)
    # Image overrides by retrieval algorithm: the Cloud Run serving image, and the Vertex prediction container.
    run_images: Mapping[str, str] = dataclasses.field(default_factory=dict)
    vertex_images: Mapping[str, str] = dataclasses.field(default_factory=dict)
    serving_service_account: str = ""
    schemas_dir: str | None = None
    pipeline: PipelineSettings = dataclasses.field(default_factory=PipelineSettings)
    identity: IdentitySettings = dataclasses.field(default_factory=lambda: IdentitySettings())

    @classmethod
    def from_environ(cls, env: Mapping[str, str], *, repository: Path | None = None) -> Config:
        """The configuration an environment describes. `repository`: where `.venv-pipeline` would be (locally)."""

        def images(**names: str) -> dict[str, str]:
            return {algorithm: env[name] for algorithm, name in names.items() if env.get(name)}

        return cls(
            project=env.get("GOOGLE_CLOUD_PROJECT") or None,
            region=env.get("GOOGLE_CLOUD_REGION") or "us-central1",
            firestore_database=env.get("REGISTRAR_FIRESTORE_DATABASE") or "(default)",
            events_topic=env.get("REGISTRAR_EVENTS_TOPIC") or "registry-events",
            ledger_ttl=timedelta(days=int(env.get("REGISTRAR_LEDGER_TTL_DAYS") or "30")),
            vertex_endpoint=env.get("VERTEX_API_ENDPOINT") or None,
            cloud_run_endpoint=env.get("CLOUD_RUN_API_ENDPOINT") or None,
            scheduler_endpoint=env.get("SCHEDULER_API_ENDPOINT") or None,
            logging_endpoint=env.get("LOGGING_API_ENDPOINT") or None,
            in_cloud=bool(env.get("K_SERVICE")),
            run_images=images(brute_force="REGISTRAR_RUN_IMAGE_TF_SERVING", scann="REGISTRAR_RUN_IMAGE_SCANN"),
            vertex_images=images(brute_force="REGISTRAR_IMAGE_TF_SERVING", scann="REGISTRAR_IMAGE_SCANN"),
            serving_service_account=env.get("REGISTRAR_SERVING_SERVICE_ACCOUNT") or "",
            schemas_dir=env.get("REGISTRAR_SCHEMAS_DIR") or None,
            pipeline=PipelineSettings(
                runner=_runner_choice(env, repository),
                template=env.get("REGISTRAR_PIPELINE_TEMPLATE") or "",
                pipeline_root=env.get("REGISTRAR_PIPELINE_ROOT") or None,
                service_account=env.get("REGISTRAR_PIPELINE_SERVICE_ACCOUNT") or None,
                network=env.get("REGISTRAR_PIPELINE_NETWORK") or None,
                api_endpoint=env.get("REGISTRAR_PIPELINES_API_ENDPOINT") or None,
                events_outcome=env.get("REGISTRAR_EVENTS_OUTCOME") or "succeeded",
                events_artifacts_root=env.get("REGISTRAR_EVENTS_ARTIFACTS_ROOT") or None,
                local_python=env.get("REGISTRAR_PIPELINE_PYTHON") or None,
                local_runs_dir=env.get("REGISTRAR_LOCAL_RUNS_DIR") or None,
            ),
            identity=IdentitySettings.from_environ(env),
        )

    def require_project(self) -> str:
        if not self.project:
            raise RuntimeError("GOOGLE_CLOUD_PROJECT is not set")
        return self.project


@dataclasses.dataclass(frozen=True)
class IdentitySettings:
    """Who calls the API. `mode` is `google` (a Google-signed ID token is required: production) or `local` (the
    emulators are configured and this is not Cloud Run / Cloud Functions: a call without a token is
    `local:<local_user>`, and tokens are verified against the local issuer's keys at `local_certs_url`)."""

    mode: str = "google"
    audiences: tuple[str, ...] = ()
    local_user: str = ""
    local_certs_url: str | None = None
    # Behind Identity-Aware Proxy: the audience prefix of its assertions (`/projects/NUMBER/global/backendServices/`).
    iap_audience_prefix: str = ""
    # The access policy used until an approver saves one (Terraform's variables, as JSON).
    policy_seed: Mapping[str, Any] | None = None

    @property
    def local(self) -> bool:
        return self.mode == "local"

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> IdentitySettings:
        in_cloud = bool(env.get("K_SERVICE"))
        emulated = bool(env.get("FIRESTORE_EMULATOR_HOST") or env.get("PUBSUB_EMULATOR_HOST"))
        # Never local on Cloud Run / Cloud Functions, whatever else the environment says.
        local = emulated and not in_cloud
        seed = env.get("REGISTRAR_POLICY_SEED") or ""
        try:
            policy_seed = json.loads(seed) if seed else None
        except ValueError as exc:
            raise ValueError(f"REGISTRAR_POLICY_SEED is not JSON: {exc}") from None
        if policy_seed is not None and not isinstance(policy_seed, dict):
            raise ValueError("REGISTRAR_POLICY_SEED must be a JSON object")
        return cls(
            mode="local" if local else "google",
            audiences=tuple(a.strip() for a in (env.get("REGISTRAR_API_AUDIENCES") or "").split(",") if a.strip()),
            local_user=(env.get("USER") or env.get("LOGNAME") or "developer") if local else "",
            local_certs_url=(env.get("REGISTRAR_LOCAL_ID_CERTS_URL") or None) if local else None,
            iap_audience_prefix=(env.get("REGISTRAR_IAP_AUDIENCE_PREFIX") or "").strip(),
            policy_seed=policy_seed,
        )


def _runner_choice(env: Mapping[str, str], repository: Path | None) -> str:
    """REGISTRAR_PIPELINE_RUNNER = vertex | local | events; unset: vertex on Cloud Run / Functions (K_SERVICE),
    local when the Pub/Sub emulator is configured and `.venv-pipeline` exists, else none (a scheduled run fails
    and says how to configure one). `events` simulates runs; it is used only when asked for by name."""
    choice = (env.get("REGISTRAR_PIPELINE_RUNNER") or "").strip().lower()
    if choice:
        if choice not in ("vertex", "local", "events"):
            raise ValueError(f"REGISTRAR_PIPELINE_RUNNER must be vertex, local or events, got {choice!r}")
        return choice
    if env.get("K_SERVICE"):
        return "vertex"
    if env.get("PUBSUB_EMULATOR_HOST") and repository is not None and (repository / ".venv-pipeline").exists():
        return "local"
    return "none"
