"""`registrar show`: what a version's training run recorded — the Evaluator's verdict (each threshold as threshold /
achieved / margin, against which baseline version), what made it (input, rows, the examples' fingerprint, training
config, library versions, pipeline job) and the ScaNN settings its export chose."""

from __future__ import annotations

import json
from typing import Any

from registrar_cli.main import _table, _text


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _margin(value: Any) -> str:
    return "-" if value is None else f"{value:+.4g}"


def _json(value: Any) -> str:
    return "-" if not value else json.dumps(value, sort_keys=True, separators=(", ", ": "))


def evaluation_table(version_id: str, evaluation: dict[str, Any]):
    baseline = evaluation.get("baseline") or {}
    if baseline.get("used"):
        against = f"baseline version {baseline.get('version') or '?'}"
    else:
        against = f"no baseline model ({baseline.get('skipped_reason') or 'none'})"
    verdict = "blessed" if evaluation.get("blessed") else "NOT blessed"
    table = _table(f"version {version_id} evaluation: {verdict}, {against}", "kind", "metric", "threshold",
                   "achieved", "margin", "outcome")
    for outcome in evaluation.get("thresholds") or []:
        passed = outcome.get("passed")
        result = f"skipped: {outcome['skipped']}" if outcome.get("skipped") else {True: "passed", False: "FAILED"}.get(
            passed, "-")
        table.add_row(_text(outcome.get("kind")), _text(outcome.get("metric")),
                      f"{outcome.get('comparator', '')} {_number(outcome.get('threshold'))}",
                      _number(outcome.get("achieved")), _margin(outcome.get("margin")), result)
    return table


def lineage_table(version_id: str, lineage: dict[str, Any], scann: dict[str, Any] | None):
    table = _table(f"version {version_id} lineage", "field", "value")
    source = lineage.get("input") or {}
    if source:
        table.add_row("input", source.get("query") or ", ".join(source.get("uris") or []) or "-")
    data = lineage.get("data") or {}
    table.add_row("data fingerprint", _text(data.get("fingerprint")))
    table.add_row("rows", ", ".join(f"{split} {count}" for split, count in sorted((data.get("rows") or {}).items()))
                  or "-")
    table.add_row("examples", _text(data.get("examples_uri")))
    table.add_row("training config", _json(lineage.get("training_config")))
    table.add_row("hyperparameters", _json(lineage.get("hyperparameters")))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in sorted((lineage.get("versions") or {}).items())) or "-")
    table.add_row("pipeline job", _text((lineage.get("pipeline_job") or {}).get("name")))
    if scann:
        table.add_row("retrieval", scann_line(scann))
    return table


def scann_line(scann: dict[str, Any]) -> str:
    measured = (f"recall@{scann.get('k')} {_number(scann.get('recall_at_k'))}, "
                f"{_number(scann.get('speedup'))}x brute force")
    settings = _json(scann.get("params"))
    return f"{scann.get('algorithm')}: {measured}; {settings} ({_text(scann.get('reason'))})"


def version_records(versions: list[dict[str, Any]]) -> list:
    """A table per recorded evaluation and lineage (newest version first, as the API lists them)."""
    tables = []
    for version in versions:
        version_id = str(version.get("version_id"))
        if version.get("evaluation"):
            tables.append(evaluation_table(version_id, version["evaluation"]))
        if version.get("lineage") or version.get("scann"):
            tables.append(lineage_table(version_id, version.get("lineage") or {}, version.get("scann")))
    return tables
