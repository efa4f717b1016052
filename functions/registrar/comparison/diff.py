"""Two versions side by side — pure logic over what `facts` read.

Metrics: every metric either version has, with the delta (b − a) and which is better by the metric's direction
(`kernel.metrics`, one table); a metric without a known direction, or missing on one side, gets no verdict.
Training config: nested objects are compared key by key (dotted paths), anything else as a whole value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel import metrics as directions

_MISSING = object()


def metric_rows(a: Mapping[str, float], b: Mapping[str, float]) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(set(a) | set(b)):
        value_a, value_b = _number(a.get(name)), _number(b.get(name))
        delta = value_b - value_a if value_a is not None and value_b is not None else None
        rows.append({
            "name": name,
            "direction": directions.direction(name),
            "a": value_a,
            "b": value_b,
            "delta": delta,
            "relative_delta": delta / abs(value_a) if delta is not None and value_a else None,
            "better": directions.better(name, value_a, value_b),
        })
    return rows


def verdicts(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How many metrics each side wins, ties, and how many have no verdict."""
    counts = {"a": 0, "b": 0, "equal": 0, "unknown": 0}
    for row in rows:
        counts[row["better"] or "unknown"] += 1
    return counts


def config_diff(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> dict[str, Any]:
    """{"differences": [{key, a, b, only_in}], "same": [keys]} over the flattened configs (dotted keys)."""
    flat_a, flat_b = _flatten(a or {}), _flatten(b or {})
    differences, same = [], []
    for key in sorted(set(flat_a) | set(flat_b)):
        value_a, value_b = flat_a.get(key, _MISSING), flat_b.get(key, _MISSING)
        if value_a == value_b:
            same.append(key)
            continue
        only_in = "b" if value_a is _MISSING else "a" if value_b is _MISSING else None
        differences.append({"key": key, "a": None if value_a is _MISSING else value_a,
                            "b": None if value_b is _MISSING else value_b, "only_in": only_in})
    return {"differences": differences, "same": same}


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
