"""Predict request bodies, validated the way TF Serving's REST API reads them (row ``instances`` or columnar
``inputs``), with messages that name what is wrong."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class RequestError(ValueError):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class PredictRequest:
    features: dict[str, np.ndarray]
    batch_size: int
    columnar: bool
    top_k: int


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _convert(name: str, value, dtype, where: str):
    expected = _expected(dtype)
    if dtype.is_floating or dtype.is_integer:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(f"feature {name!r}{where} must be {expected}, got {_kind(value)} {value!r:.40}")
        if dtype.is_integer and not float(value).is_integer():
            raise RequestError(f"feature {name!r}{where} must be {expected}, got {value!r}")
        if not math.isfinite(value):
            raise RequestError(f"feature {name!r}{where} must be a finite number")
        return value
    if dtype.name == "string":
        if not isinstance(value, str):
            raise RequestError(f"feature {name!r}{where} must be {expected}, got {_kind(value)} {value!r:.40}")
        return value
    raise RequestError(f"feature {name!r} has unsupported dtype {dtype.name}", status=500)


def _expected(dtype) -> str:
    if dtype.name == "string":
        return "a string (DT_STRING)"
    if dtype.is_integer:
        return f"an integer ({dtype.name})"
    return f"a number ({dtype.name})"


def parse_predict(body, inputs: dict, default_top_k: int, max_top_k: int, max_batch: int) -> PredictRequest:
    """``inputs``: feature name -> tf.DType (the query tower's signature)."""
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object with 'instances' or 'inputs'")
    unknown_keys = sorted(set(body) - {"instances", "inputs", "signature_name", "top_k"})
    if unknown_keys:
        raise RequestError(f"unknown request field(s) {unknown_keys}; expected 'instances' or 'inputs', optionally "
                           f"'signature_name' and 'top_k'")
    signature = body.get("signature_name", "serving_default")
    if signature != "serving_default":
        raise RequestError(f"serving signature name {signature!r} not found in signature def; "
                           f"the only signature is 'serving_default'")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise RequestError("request must contain exactly one of 'instances' (row format) or 'inputs' "
                           "(columnar format)" + ("; it has both" if has_rows else "; it has neither"))
    top_k = _top_k(body.get("top_k", default_top_k), max_top_k)
    columns = _rows(body["instances"], inputs) if has_rows else _columns(body["inputs"], inputs)
    batch = len(next(iter(columns.values())))
    if batch > max_batch:
        raise RequestError(f"batch of {batch} exceeds the maximum of {max_batch} (MAX_BATCH_SIZE)")
    features = {name: np.asarray(values, dtype=object if dtype.name == "string" else dtype.as_numpy_dtype)
                for (name, dtype), values in zip(inputs.items(), columns.values(), strict=True)}
    return PredictRequest(features, batch, has_cols, top_k)


def _top_k(value, max_top_k: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= max_top_k:
        raise RequestError(f"top_k must be an integer between 1 and {max_top_k} (the smaller of MAX_TOP_K and the "
                           f"number of candidates), got {value!r}")
    return value


def _rows(instances, inputs: dict) -> dict[str, list]:
    if not isinstance(instances, list):
        raise RequestError(f"'instances' must be a list of objects (one per example), got {_kind(instances)}")
    if not instances:
        raise RequestError("'instances' is empty: send at least one instance")
    columns: dict[str, list] = {name: [] for name in inputs}
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise RequestError(f"instance {i} must be an object with features {list(inputs)}, got {_kind(instance)}")
        _check_features(f"instance {i}", instance, inputs)
        for name, dtype in inputs.items():
            columns[name].append(_convert(name, instance[name], dtype, f" in instance {i}"))
    return columns


def _check_features(where: str, given: dict, inputs: dict) -> None:
    """Exactly the serving signature's features, or a 400 naming the missing and the unknown ones."""
    missing = [name for name in inputs if name not in given]
    if missing:
        raise RequestError(f"{where} is missing feature(s) {missing} (expected {list(inputs)})")
    extra = sorted(set(given) - set(inputs))
    if extra:
        raise RequestError(f"{where} has unknown feature(s) {extra} (expected {list(inputs)})")


def _columns(data, inputs: dict) -> dict[str, list]:
    if not isinstance(data, dict):
        raise RequestError(f"'inputs' must be an object mapping each feature to a list, got {_kind(data)}")
    _check_features("'inputs'", data, inputs)
    columns: dict[str, list] = {}
    for name, dtype in inputs.items():
        values = data[name]
        if not isinstance(values, list):
            raise RequestError(f"'inputs' feature {name!r} must be a list (one value per example), got "
                               f"{_kind(values)}")
        columns[name] = [_convert(name, v, dtype, f" at position {j}") for j, v in enumerate(values)]
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise RequestError(f"'inputs' lists have unequal lengths {lengths}: every feature needs one value per example")
    if not next(iter(lengths.values())):
        raise RequestError("'inputs' lists are empty: send at least one example")
    return columns
