"""What promoting a version to a protected alias requires: the checks, each with its verdict and why.

The approval by a different principal is the decision's rule (`handlers.decide_promotion`); these are the checks
of the versions themselves, evaluated when the promotion is asked for and again when it is approved (the holder
may have changed in between).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from registrar.kernel.model import best_metric, evaluation_of, higher_is_better
from registrar.releases.policy import Protection

BLESSED = "blessed"
METRIC = "metric_not_worse"


@dataclasses.dataclass(frozen=True)
class Check:
    requirement: str
    passed: bool
    detail: str

    def to_doc(self) -> dict[str, Any]:
        return {"requirement": self.requirement, "passed": self.passed, "detail": self.detail}


def evaluate(protection: Protection, version_id: str, version: Mapping[str, Any], holder_id: str | None,
             holder: Mapping[str, Any] | None) -> list[Check]:
    """The checks `protection` asks for, of `version` against the alias's current `holder` (None: no holder)."""
    checks = []
    if protection.require_blessed:
        evaluation = evaluation_of(version.get("blessed"))
        checks.append(Check(BLESSED, evaluation == "blessed", f"version {version_id} evaluation: {evaluation}"))
    if protection.metric_tolerance is not None:
        checks.append(_metric_check(protection.metric_tolerance, version_id, version, holder_id, holder))
    return checks


def _metric_check(tolerance: float, version_id: str, version: Mapping[str, Any], holder_id: str | None,
                  holder: Mapping[str, Any] | None) -> Check:
    if holder_id is None or holder is None or holder_id == version_id:
        return Check(METRIC, True, "no other version holds the alias")
    holder_metric = best_metric(holder.get("metrics") or {})
    if holder_metric is None:
        return Check(METRIC, True, f"version {holder_id} (the holder) has no primary metric to compare with")
    name, held = holder_metric
    candidate = (version.get("metrics") or {}).get(name)
    if candidate is None:
        return Check(METRIC, False, f"version {version_id} has no {name}; the holder, version {holder_id}, has {held:g}")
    candidate = float(candidate)
    worse_by = (held - candidate) if higher_is_better(name) else (candidate - held)
    passed = worse_by <= tolerance + 1e-12
    verdict = "within" if passed else "beyond"
    return Check(METRIC, passed, f"{name} {candidate:g} vs {held:g} of version {holder_id} (the holder): worse by "
                                 f"{max(worse_by, 0):g}, {verdict} the tolerance {tolerance:g}")


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.passed]


def refusal_message(alias: str, checks: list[Check]) -> str:
    return f"promotion to protected alias {alias!r} refused: " + "; ".join(
        f"{c.requirement} failed ({c.detail})" for c in failed(checks))
