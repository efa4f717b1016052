"""Predictions through the registry: which served model answers a request (Cloud Run's answer, read the way the
status queries read it), what a request may hold, and an example instance for the signature a version serves.

The registry knows which service serves a version and calls it server to server (`kernel.ports.ModelServer`);
browsers and the CLI never call a serving service directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel.http import BadParameter
from registrar.kernel.ports import ModelServer, ServedModel
from registrar.kernel.serving import ServingSnapshot, served_version
from registrar.registry.queries import DeploymentStatusUnknown, serving_state

CALLS = (ModelServer.predict, ModelServer.signature_inputs)  # what answering a prediction calls outside Firestore
MAX_INSTANCES = 64
MAX_TOP_K = 1000
PREDICT_FIELDS = ("instances", "top_k")
# Example values for the features the pipeline's query tower takes (pipeline/models/features.py); any other
# feature starts from a value of its dtype.
EXAMPLE_VALUES: dict[str, Any] = {"customer_id": "CUST000001", "city": "Warsaw", "segment": "enterprise",
                                  "revenue": 50000.0}
DTYPE_EXAMPLES: dict[str, Any] = {"DT_STRING": "", "DT_FLOAT": 0.0, "DT_DOUBLE": 0.0, "DT_INT32": 0, "DT_INT64": 0,
                                  "DT_BOOL": False}


class NotServing(Exception):
    """No ready Cloud Run service of the model serves the version asked for."""


def served_model(doc: Mapping[str, Any], snapshot: ServingSnapshot | None, version_id: str | None) -> ServedModel:
    """The ready service serving `version_id` of the model `doc` (the version the model serves now when None), as
    `/models/{id}`'s `deployment` reads it. DeploymentStatusUnknown when Cloud Run cannot be asked."""
    model_id = doc["model_id"]
    if snapshot is None:
        raise DeploymentStatusUnknown("no serving platform is configured on this API")
    if not snapshot.known:
        raise DeploymentStatusUnknown(f"Cloud Run could not be reached: {snapshot.error}")
    state = serving_state(doc, snapshot, version_id)
    if state is None:
        what = f"version {version_id!r} of model {model_id!r}" if version_id else f"model {model_id!r}"
        raise NotServing(f"{what} is not deployed (no ready Cloud Run service serves it); deploy it first")
    return ServedModel(service_id=state.service_id, uri=state.uri.rstrip("/"), version_id=served_version(state),
                       model_name=state.env.get("MODEL_NAME") or model_id)


def predict_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request to send on: `instances` (1 to 64 objects, feature name → value) and an optional `top_k`."""
    extra = sorted(set(body) - set(PREDICT_FIELDS))
    if extra:
        raise BadParameter(extra[0], f"is not a field of this request (known: {', '.join(PREDICT_FIELDS)})")
    instances = body.get("instances")
    if (not isinstance(instances, list) or not 1 <= len(instances) <= MAX_INSTANCES
            or not all(isinstance(i, dict) and i for i in instances)):
        raise BadParameter("instances", f"must be a list of 1-{MAX_INSTANCES} objects, feature name → value")
    top_k = body.get("top_k")
    if top_k is None:
        return {"instances": instances}
    whole = isinstance(top_k, int) or (isinstance(top_k, float) and top_k.is_integer())
    if isinstance(top_k, bool) or not whole or not 1 <= top_k <= MAX_TOP_K:
        raise BadParameter("top_k", f"must be an integer between 1 and {MAX_TOP_K}")
    return {"instances": instances, "top_k": int(top_k)}


def example_instance(inputs: Mapping[str, str]) -> dict[str, Any]:
    """An instance with a value for every input of a serving signature (name → TF dtype)."""
    return {name: EXAMPLE_VALUES.get(name, DTYPE_EXAMPLES.get(dtype, "")) for name, dtype in inputs.items()}
