"""`registrar compare MODEL A B`: two versions side by side, through the registry API.

A and B are version ids of MODEL; either may instead be `OTHER_MODEL@VERSION`, a version of another model of the same
type (`GET /compare`). Deltas are B − A; the better column names the better side by the metric's direction.
"""

from __future__ import annotations

import re
from typing import Any

import click
from registrar_cli.main import _table, _text, api_get, api_options, print_body

_REF_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}(?:@[A-Za-z0-9_-]{1,128})?$")


def _reference(ctx, param, value: str) -> str:
    if not _REF_RE.match(value):
        raise click.BadParameter(f"{value!r} is neither a version id nor MODEL@VERSION")
    return value


@click.command()
@click.argument("model_id")
@click.argument("a", callback=_reference)
@click.argument("b", callback=_reference)
@api_options
def compare(model_id: str, a: str, b: str, api: str | None, as_json: bool) -> None:
    """Versions A and B of MODEL_ID side by side: metrics with deltas and which is better, evaluation, training
    config differences, lineage, registration and deploy dates. A or B may be OTHER_MODEL@VERSION."""
    ref_a = a if "@" in a else f"{model_id}@{a}"
    ref_b = b if "@" in b else f"{model_id}@{b}"
    if ref_a.startswith(f"{model_id}@") and ref_b.startswith(f"{model_id}@"):
        body = api_get(api, f"/models/{model_id}/compare", {"versions": f"{ref_a.split('@')[1]},{ref_b.split('@')[1]}"})
    else:
        body = api_get(api, "/compare", {"a": ref_a, "b": ref_b})
    print_body(body, as_json, comparison_table)


def _side(facts: dict[str, Any], same_model: bool) -> str:
    return facts["version_id"] if same_model else f"{facts['model_id']}@{facts['version_id']}"


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def comparison_table(body: dict[str, Any]):
    a, b = body["a"], body["b"]
    same_model = a["model_id"] == b["model_id"]
    name_a, name_b = _side(a, same_model), _side(b, same_model)
    title = (f"{a['model_id']}: version {name_a} vs {name_b}" if same_model
             else f"{a['model_id']}@{a['version_id']} vs {b['model_id']}@{b['version_id']}")
    table = _table(f"{title} ({body.get('model_type') or 'type unknown'})", "", f"A: {name_a}", f"B: {name_b}",
                   "Δ (B − A)", "better")
    marks = {"a": f"{name_a} ▲", "b": f"{name_b} ▲", "equal": "=", None: "?"}
    for row in body["metrics"]:
        direction = {"higher_is_better": " ↑", "lower_is_better": " ↓"}.get(row["direction"], "")
        verdict = marks[row["better"]] if row["a"] is not None and row["b"] is not None else "-"
        table.add_row(f"{row['name']}{direction}", _number(row["a"]), _number(row["b"]), _number(row["delta"], True),
                      verdict)
    table.add_section()
    for label, key in (("evaluation", "evaluation"), ("state", "state"), ("aliases", "aliases"),
                       ("registered", "registered_at"), ("deleted", "deleted_at")):
        table.add_row(label, _text(a.get(key)), _text(b.get(key)), "", "")
    run_a, run_b = a["lineage"]["training_run"] or {}, b["lineage"]["training_run"] or {}
    table.add_row("training run", _run(run_a), _run(run_b), "", "")
    table.add_row("pipeline job", _text(run_a.get("pipeline_job_name")), _text(run_b.get("pipeline_job_name")), "", "")
    table.add_row("model artifact", _text(a["lineage"]["artifact_uri"]), _text(b["lineage"]["artifact_uri"]), "", "")
    table.add_row("deployed", _deployments(a["deployments"]), _deployments(b["deployments"]), "", "")
    differences = body["training_config"]["differences"]
    if differences or body["training_config"]["same"]:
        table.add_section()
        for row in differences:
            table.add_row(f"config {row['key']}", _config(row, "a"), _config(row, "b"), "", "")
        table.add_row("config, same", _text(body["training_config"]["same"]), "", "", "")
    return table


def _run(run: dict[str, Any]) -> str:
    if not run:
        return "-"
    return f"{run.get('training_run_id')} ({_text(run.get('status'))}, finished {_text(run.get('finished_at'))})"


def _deployments(deployments: list[dict[str, Any]]) -> str:
    if not deployments:
        return "never"
    return "; ".join(f"{d['service_id']} {_text(d['deployed_at'])}"
                     + (" (serving)" if d["serving"] else " (rolled back)" if d["rolled_back_at"] else "")
                     for d in deployments)


def _config(row: dict[str, Any], side: str) -> str:
    other = "b" if side == "a" else "a"
    return "(not set)" if row["only_in"] == other else _text(row[side])
