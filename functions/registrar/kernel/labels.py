"""Vertex AI / Cloud Run label rules, in one place: what a label may hold, and what the registry reads from them.

Label keys and values: at most 63 characters of lowercase letters, digits, `_` and `-` (keys start with a letter).
Values are sanitised here and nowhere else, so a run id sanitised for a PipelineJob label and for a model
version label is the same string. Labels carry only what survives that alphabet — the run id, the model type, the
blessing — never metrics: a value cannot hold a minus sign as such, an exponent or full precision (-0.5 read back
as 0.5; 1.234e-05 was lost). A version's metrics come from its training run (its event, or the Trainer's metrics
file).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

MAX_LABEL_LENGTH = 63
MAX_LABELS = 64
RUN_ID_LABEL = "training_run_id"
RUN_ID_LABELS = (RUN_ID_LABEL, "registrar-run-id", "registrar_run_id")
MODEL_TYPE_LABEL = "model_type"
BLESSED_LABEL = "blessed"
# On a version registered from a run no pipeline produced (the events runner): `simulated=true`.
SIMULATED_LABEL = "simulated"
_LABEL_CHARS = re.compile(r"[^a-z0-9_-]+")


def sanitize_label_value(value: Any) -> str:
    """Vertex label value: lowercase letters, digits, `_`, `-`, at most 63 characters (may be empty).
    Truncated values end in a short hash of the original, so two long values stay distinct."""
    text = str(value).lower().replace(".", "_")
    text = _LABEL_CHARS.sub("-", text).strip("-")
    if len(text) > MAX_LABEL_LENGTH:
        digest = hashlib.sha256(str(value).encode()).hexdigest()[:8]
        text = f"{text[:MAX_LABEL_LENGTH - 9].rstrip('-_')}-{digest}"
    return text


def sanitize_label_key(key: str) -> str:
    """Vertex label key: as a value, but non-empty and starting with a lowercase letter."""
    text = sanitize_label_value(key)
    if not text or not text[0].isalpha():
        text = f"k-{text}" if text else "k"
    return text[:MAX_LABEL_LENGTH].rstrip("-_") or "k"


def run_id_from_labels(labels: Mapping[str, str]) -> str | None:
    for key in RUN_ID_LABELS:
        if labels.get(key):
            return labels[key]
    return None


def blessed_from_labels(labels: Mapping[str, str]) -> bool | None:
    """The label's verdict; None (not evaluated yet) when it has none, e.g. `unknown`, which a registration writes
    for a run whose blessing had not arrived: the run's evaluation then decides."""
    value = (labels.get(BLESSED_LABEL) or "").lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    return None


def with_model_labels(labels: Mapping[str, str], model_before: Mapping[str, str],
                      model_after: Mapping[str, str]) -> dict[str, str]:
    """A version's labels once its model's own labels changed from `model_before` to `model_after`. Vertex returns a
    version's labels merged with its model's; a key the version holds a value of its own for keeps that value."""
    own = {k: v for k, v in labels.items() if model_before.get(k) != v}
    return {**model_after, **own}


def simulated_from_labels(labels: Mapping[str, str]) -> bool:
    return labels.get(SIMULATED_LABEL, "").lower() == "true"

