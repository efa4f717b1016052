"""From TFMA's metrics to the run's verdict (pure Python): each threshold's outcome as "threshold / achieved /
margin", the popularity floor, and the blessing.

A margin is signed: positive means passed with that much room, negative failed by that much (a strict comparison
with a zero margin fails). Outcome kinds:

- ``value``: the run's fixed bound (``recall_at_100 >= recall_threshold``, ``rmse <= rmse_threshold``);
- ``change``: against the baseline model on the same examples (the threshold is the baseline's value minus the
  allowed drop, or plus the allowed rise); skipped, with the reason, when the run has no usable baseline;
- ``popularity``: the model must beat the popularity baseline on the same held-out split (strictly).

Blessed: every outcome that was not skipped passed, and TFMA's own validation (value and change thresholds)
agrees. Without any outcome at all nothing is blessed.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from pipeline.evaluation import config as C

CANDIDATE = "candidate"
BASELINE = "baseline"


def metric_table(records: Iterable[tuple[str, str, str, bool, float]]) -> dict:
    """(name, model_name, output_name, is_diff, value) records -> {"model"|"baseline_model"|"diff": {metric: v}}
    with ``metric`` ``recall_at_K`` / ``popularity_recall_at_K`` or, for rating outputs, ``rmse`` / ``mae`` /
    ``popularity_rmse`` / ``popularity_mae``."""
    table: dict[str, dict[str, float]] = {"model": {}, "baseline_model": {}, "diff": {}}
    for name, model_name, output_name, is_diff, value in records:
        if output_name == C.POPULARITY_OUTPUT:
            name = C.POPULARITY_PREFIX + name
        elif output_name not in ("", C.MODEL_OUTPUT):
            continue
        section = "diff" if is_diff else ("baseline_model" if model_name == BASELINE else "model")
        table[section][name] = float(value)
    return table


def _outcome(metric, kind, comparator, threshold, achieved, **extra) -> dict:
    if achieved is None:
        return {"metric": metric, "kind": kind, "comparator": comparator, "threshold": threshold, "achieved": None,
                "margin": None, "passed": False, "skipped": None, "note": f"{metric} was not computed", **extra}
    higher = comparator in (">=", ">")
    margin = (achieved - threshold) if higher else (threshold - achieved)
    passed = margin >= 0 if comparator in (">=", "<=") else margin > 0
    return {"metric": metric, "kind": kind, "comparator": comparator, "threshold": threshold, "achieved": achieved,
            "margin": margin, "passed": bool(passed), "skipped": None, **extra}


def _skipped(metric, kind, comparator, reason, **extra) -> dict:
    return {"metric": metric, "kind": kind, "comparator": comparator, "threshold": None, "achieved": None,
            "margin": None, "passed": None, "skipped": reason, **extra}


def outcomes(model_type: str, thresholds: C.Thresholds, table: Mapping, baseline_used: bool,
             baseline_skipped: str | None = None) -> list[dict]:
    model, base = table.get("model", {}), table.get("baseline_model", {})
    checks = []
    if C.evaluates_recall(model_type):
        checks.append((C.RECALL_METRIC, True, thresholds.recall_threshold, thresholds.recall_change_tolerance))
    if C.evaluates_rating(model_type):
        checks.append((C.RMSE, False, thresholds.rmse_threshold, thresholds.rmse_change_tolerance))
    result = []
    for metric, higher, bound, tolerance in checks:
        achieved = model.get(metric)
        if bound is not None:
            result.append(_outcome(metric, "value", ">=" if higher else "<=", bound, achieved))
        if tolerance is not None:
            if baseline_used and base.get(metric) is not None:
                limit = base[metric] - tolerance if higher else base[metric] + tolerance
                result.append(_outcome(metric, "change", ">=" if higher else "<=", limit, achieved,
                                       baseline_value=base[metric], tolerance=tolerance))
            else:
                result.append(_skipped(metric, "change", ">=" if higher else "<=",
                                       baseline_skipped or "no baseline model (the first model of this name)",
                                       tolerance=tolerance))
        popular = model.get(C.POPULARITY_PREFIX + metric)
        if popular is None:
            result.append(_outcome(metric, "popularity", ">" if higher else "<", None, None))
        else:
            result.append(_outcome(metric, "popularity", ">" if higher else "<", popular, achieved,
                                   baseline_value=popular))
    return result


def decide(results: list[dict], tfma_validation_ok: bool | None, tfma_failures: list[str] = ()) -> tuple[bool, str]:
    checked = [o for o in results if o["skipped"] is None]
    if not checked:
        return False, "no threshold could be checked"
    failed = [o for o in checked if not o["passed"]]
    reasons = [describe(o) for o in checked]
    if tfma_validation_ok is False and not failed:
        return False, "TFMA validation failed: " + "; ".join(tfma_failures or ["(no details)"])
    return not failed, "; ".join(reasons)


def describe(o: dict) -> str:
    if o["achieved"] is None:
        return f"{o['kind']} {o['metric']}: {o.get('note', 'not computed')}"
    word = "passed" if o["passed"] else "failed"
    return (f"{o['kind']} {o['metric']}={o['achieved']:.4f} {o['comparator']} {o['threshold']:.4f} {word} "
            f"(margin {o['margin']:+.4f})")
