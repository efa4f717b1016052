"""`registrar predict`: send a prediction to a served model version through the registry API.

The registry finds the Cloud Run service serving the version and calls it (with an ID token in production); the
CLI never calls a serving service directly.
"""

from __future__ import annotations

import json
from typing import Any

import click
from registrar_cli.main import _table, api_options, api_send, print_body


def _instance(value: str) -> dict[str, Any]:
    try:
        instance = json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"is not JSON: {exc}", param_hint="--instance") from None
    if not isinstance(instance, dict) or not instance:
        raise click.BadParameter('must be a JSON object, feature name → value: {"customer_id": "CUST000001", …}',
                                 param_hint="--instance")
    return instance


@click.command()
@click.argument("model_id")
@click.option("--version", "version_id", metavar="V", help="The version to ask (default: the one the model serves).")
@click.option("--instance", "instances", metavar="JSON", multiple=True, required=True,
              help="One instance as a JSON object of features; repeat for several.")
@click.option("--top-k", type=click.IntRange(1, 1000), help="Products per instance (default: the server's).")
@api_options
def predict(model_id: str, version_id: str | None, instances: tuple[str, ...], top_k: int | None, api: str | None,
            as_json: bool) -> None:
    """Ask a served version of MODEL_ID for products, e.g.
    registrar predict recs --instance '{"customer_id": "CUST000001", "city": "Warsaw", "segment": "enterprise",
    "revenue": 50000.0}'"""
    body: dict[str, Any] = {"instances": [_instance(i) for i in instances]}
    if top_k is not None:
        body["top_k"] = top_k
    path = f"/models/{model_id}/versions/{version_id}:predict" if version_id else f"/models/{model_id}:predict"
    print_body(api_send(api, "POST", path, json=body, timeout=90), as_json, predictions_table)


def predictions_table(body: dict[str, Any]):
    table = _table(f"version {body.get('version_id')} of {body.get('model_id')} on {body.get('service')}",
                   "instance", "rank", "product id", "score")
    for index, prediction in enumerate(body.get("predictions") or []):
        scores = prediction.get("scores") or []
        for rank, product in enumerate(prediction.get("product_ids") or [], start=1):
            score = scores[rank - 1] if rank - 1 < len(scores) else None
            table.add_row(str(index), str(rank), str(product), f"{score:.4f}" if isinstance(score, float) else str(score))
    return table
