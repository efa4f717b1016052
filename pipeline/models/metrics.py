"""Turn Keras histories / evaluate() results into ``training_metrics.json`` (pure Python, no TensorFlow).

Layout::

    {"model_type": ..., "epochs_run": N,
     "history": {"train": {"loss": [...], ...}, "validation": {"loss": [...], "recall_at_100": [...], ...}},
     "final": {...validation metrics at the last epoch (recall@K, rmse, mae, loss) + train_loss...},
     "test": {...metrics on the held-out test split...}}
"""
from __future__ import annotations

import math
import re

_TOPK = re.compile(r"(?:^|/)top_(\d+)_categorical_accuracy$")
PRIMARY = {"retrieval": "recall_at_100", "ranking": "rmse", "multitask": "recall_at_100"}
MODEL_TYPES = ("retrieval", "ranking", "multitask")


def canonical(key: str):
    """Map a Keras metric name to our name, or None when it is not one we report."""
    m = _TOPK.search(key)
    if m:
        return f"recall_at_{int(m.group(1))}"
    if key in ("rmse", "root_mean_squared_error"):
        return "rmse"
    if key in ("mae", "mean_absolute_error"):
        return "mae"
    if key in ("loss", "total_loss"):
        return key
    return None


def _clean(value):
    value = float(value)
    return value if math.isfinite(value) else None


def split_history(history: dict, model_type: str):
    """Keras ``History.history`` -> ({"train": {...}}, {"validation": {...}}) with canonical names.

    Recall@K in the training split is not computed (it needs all candidates; skipped while training), so only
    losses are kept for training; the validation split carries recall@K and RMSE / MAE.
    """
    train, validation = {}, {}
    for key, values in history.items():
        is_val = key.startswith("val_")
        name = canonical(key[4:] if is_val else key)
        if name is None or name == "total_loss":
            continue
        if not is_val and name.startswith("recall_at_"):
            continue
        if model_type == "ranking" and name.startswith("recall_at_"):
            continue
        if model_type == "retrieval" and name in ("rmse", "mae"):
            continue
        (validation if is_val else train)[name] = [_clean(v) for v in values]
    return train, validation


def extract_metrics(history: dict, test_results: dict, model_type: str) -> dict:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}")
    train, validation = split_history(history, model_type)
    final = {name: values[-1] for name, values in validation.items() if values and values[-1] is not None}
    if train.get("loss"):
        final["train_loss"] = train["loss"][-1]
    if "loss" in final:
        final["val_loss"] = final.pop("loss")
    test = {}
    for key, value in (test_results or {}).items():
        name = canonical(key)
        if name is None or name == "total_loss":
            continue
        if model_type == "ranking" and name.startswith("recall_at_"):
            continue
        if model_type == "retrieval" and name in ("rmse", "mae"):
            continue
        if _clean(value) is not None:
            test[name] = _clean(value)
    epochs = max((len(v) for v in train.values()), default=0)
    return {
        "model_type": model_type,
        "primary_metric": PRIMARY[model_type],
        "epochs_run": epochs,
        "history": {"train": train, "validation": validation},
        "final": final,
        "test": test,
    }


def flat_metrics(metrics: dict) -> dict:
    """Numbers for the PipelineRunEvent: final (validation) metrics plus ``test_*``."""
    out = {k: float(v) for k, v in metrics.get("final", {}).items() if isinstance(v, (int, float))}
    out.update({f"test_{k}": float(v) for k, v in metrics.get("test", {}).items() if isinstance(v, (int, float))})
    return out


def is_blessed(metrics: dict, model_type: str, recall_threshold=None, rmse_threshold=None):
    """(blessed, reason). Retrieval: recall@100 >= threshold; ranking: rmse <= threshold; multitask: both given."""
    final = metrics.get("final", {})
    checks = []
    if model_type in ("retrieval", "multitask") and recall_threshold is not None:
        checks.append(("recall_at_100", ">=", recall_threshold))
    if model_type in ("ranking", "multitask") and rmse_threshold is not None:
        checks.append(("rmse", "<=", rmse_threshold))
    if not checks:
        return False, f"no threshold configured for {model_type}"
    reasons = []
    ok = True
    for name, op, threshold in checks:
        value = final.get(name)
        if value is None:
            ok = False
            reasons.append(f"{name} missing")
            continue
        passed = value >= threshold if op == ">=" else value <= threshold
        ok = ok and passed
        reasons.append(f"{name}={value:.4f} {op} {threshold} {'passed' if passed else 'failed'}")
    return ok, "; ".join(reasons)
