"""Every Firestore document path the registry writes, derived here and nowhere else."""

from __future__ import annotations

MODELS = "models"
TRAINING_RUNS = "training_runs"
DEPLOYMENTS = "deployments"
ENDPOINTS = "endpoints"
SCHEDULES = "schedules"
QUARANTINE = "quarantine"
HISTORY = "history"
AUDITS = "audits"
LATEST_AUDIT = f"{AUDITS}/latest"


def model_path(model_id: str) -> str:
    return f"{MODELS}/{model_id}"


def archive_path(model_id: str, chunk: int) -> str:
    """A chunk of a model's archived tombstones (kernel/aggregate.py)."""
    return f"{MODELS}/{model_id}/archive/{chunk}"


def run_path(run_id: str) -> str:
    return f"{TRAINING_RUNS}/{run_id}"


def history_path(parent: str | None) -> str:
    """The history collection under a model, a training run or a schedule document (a top-level one for events
    that concern none)."""
    return f"{parent}/{HISTORY}" if parent else HISTORY


def ledger_path(key_id: str) -> str:
    return f"idempotency/{key_id}"


def quarantine_path(quarantine_id: str) -> str:
    return f"{QUARANTINE}/{quarantine_id}"


def request_path(request_id: str) -> str:
    """A deploy / undeploy request."""
    return f"{DEPLOYMENTS}/{request_id}"


def endpoint_path(service_id: str) -> str:
    return f"{ENDPOINTS}/{service_id}"


def schedule_path(schedule_id: str) -> str:
    return f"{SCHEDULES}/{schedule_id}"


def name_claim_path(model_name: str) -> str:
    """The claim that makes "one schedule per model name" transactional."""
    return f"schedule_names/{model_name}"


def run_number_path(model_name: str) -> str:
    return f"run_numbers/{model_name}"


def audit_path(report_id: str) -> str:
    return f"{AUDITS}/{report_id}"


PROMOTIONS = "promotions"
ACCESS_POLICY = "policy/access"


def promotion_path(promotion_id: str) -> str:
    """A promotion request: a version asked to take an alias (pending, approved, applied …)."""
    return f"{PROMOTIONS}/{promotion_id}"
