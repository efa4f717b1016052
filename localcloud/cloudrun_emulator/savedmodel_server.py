"""Local stand-in for native TF Serving (``serving_images/tf_serving_native``), which cannot run here: serves one
versioned SavedModel's signatures with TF Serving's REST API, so a model deployed locally answers exactly what
its SavedModel computes, as ``tensorflow_model_server`` would.

    MODEL_NAME=recs MODEL_PATH=/path/pushed_model/1700000000/ [MODEL_VERSION=1700000000] PORT=8080 \\
        .venv-pipeline/bin/python localcloud/cloudrun_emulator/savedmodel_server.py

The local Cloud Run emulator starts it for `tf-serving-native` images (runtime.py) with the pipeline's
interpreter (TensorFlow). Run as a file: it needs only the standard library, TensorFlow and numpy.

REST API (the subset Registrar's models use, with TF Serving's shapes and status codes):

- ``GET /v1/models/{name}[/versions/{v}]`` -> ``{"model_version_status": [{"version": "<v>", "state":
  "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}``
- ``GET /v1/models/{name}[/versions/{v}]/metadata`` -> ``model_spec`` and ``metadata.signature_def``
- ``POST /v1/models/{name}[/versions/{v}]:predict`` with ``{"signature_name"?, "instances": [...]}`` (row
  format: one object per example, or bare values for a single-input signature) -> ``{"predictions": [...]}``
  (one object per example, or bare values for a single output), or with ``{"inputs": {...}}`` (columnar) ->
  ``{"outputs": {...}}``.
- Errors are ``{"error": "<message>"}``: 404 for an unknown model or version, 400 for a bad request.
"""
from __future__ import annotations

import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                   r"(?P<suffix>/metadata|:[A-Za-z]+)?$")
_DTYPES = {"string": "DT_STRING", "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int32": "DT_INT32",
           "int64": "DT_INT64", "bool": "DT_BOOL"}


class RequestError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Model:
    """The loaded SavedModel and its signatures."""

    def __init__(self, name: str, path: str, version: str):
        import tensorflow as tf

        self.name, self.path, self.version = name, path, version
        self.loaded = tf.saved_model.load(path)
        self.signatures = dict(self.loaded.signatures)
        if "serving_default" not in self.signatures:
            raise SystemExit(f"savedmodel_server: {path} has no serving_default signature "
                             f"(signatures: {sorted(self.signatures)})")

    def inputs(self, signature: str) -> dict:
        return dict(self.signatures[signature].structured_input_signature[1])

    def predict(self, body) -> dict:
        import numpy as np
        import tensorflow as tf

        if not isinstance(body, dict):
            raise RequestError("JSON Value: request body must be an object with 'instances' or 'inputs'")
        signature = body.get("signature_name", "serving_default")
        if signature not in self.signatures:
            raise RequestError(f"Serving signature name: \"{signature}\" not found in signature def")
        if ("instances" in body) == ("inputs" in body):
            raise RequestError("Missing 'inputs' or 'instances' key" if "instances" not in body else
                               "Request can contain exactly one of 'inputs' or 'instances'")
        specs = self.inputs(signature)
        columnar = "inputs" in body
        columns = self._columns(body["inputs"], specs) if columnar else self._rows(body["instances"], specs)
        try:
            tensors = {name: tf.constant(np.asarray(values, dtype=object) if specs[name].dtype == tf.string
                                         else values, dtype=specs[name].dtype) for name, values in columns.items()}
            outputs = self.signatures[signature](**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise RequestError(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from None
        outputs = {name: _jsonable(value.numpy()) for name, value in outputs.items()}
        if columnar:
            return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        batch = len(next(iter(outputs.values())))
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values()))}
        return {"predictions": [{name: values[i] for name, values in outputs.items()} for i in range(batch)]}

    @staticmethod
    def _rows(instances, specs) -> dict:
        if not isinstance(instances, list) or not instances:
            raise RequestError("'instances' must be a non-empty list")
        if len(specs) == 1 and not all(isinstance(i, dict) for i in instances):
            return {next(iter(specs)): instances}
        columns = {name: [] for name in specs}
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict):
                raise RequestError(f"Failed to process element: {i} of 'instances' list. JSON Value is not an "
                                   f"object; the signature has inputs {sorted(specs)}")
            missing = sorted(set(specs) - set(instance))
            unknown = sorted(set(instance) - set(specs))
            if missing or unknown:
                raise RequestError(f"Failed to process element: {i} of 'instances' list. "
                                   + (f"Missing input(s) {missing}. " if missing else "")
                                   + (f"Unknown input(s) {unknown}. " if unknown else "")
                                   + f"The signature takes {sorted(specs)}")
            for name in specs:
                columns[name].append(instance[name])
        return columns

    @staticmethod
    def _columns(inputs, specs) -> dict:
        if len(specs) == 1 and not isinstance(inputs, dict):
            inputs = {next(iter(specs)): inputs}
        if not isinstance(inputs, dict):
            raise RequestError("'inputs' must be an object mapping each input to its values")
        missing, unknown = sorted(set(specs) - set(inputs)), sorted(set(inputs) - set(specs))
        if missing or unknown:
            raise RequestError(f"'inputs': missing {missing}, unknown {unknown}; the signature takes "
                               f"{sorted(specs)}")
        lengths = {name: len(v) if isinstance(v, list) else -1 for name, v in inputs.items()}
        if len(set(lengths.values())) != 1 or -1 in lengths.values():
            raise RequestError(f"'inputs' must hold one list per input, all of one length, got lengths {lengths}")
        return dict(inputs)

    def metadata(self) -> dict:
        signature_def = {}
        for name, fn in self.signatures.items():
            signature_def[name] = {
                "inputs": {k: _tensor_info(k, spec) for k, spec in self.inputs(name).items()},
                "outputs": {k: _tensor_info(k, spec) for k, spec in fn.structured_outputs.items()},
                "method_name": "tensorflow/serving/predict"}
        return {"model_spec": {"name": self.name, "signature_name": "", "version": self.version},
                "metadata": {"signature_def": {"signature_def": signature_def}}}


def _tensor_info(name, spec) -> dict:
    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()]
    return {"dtype": _DTYPES.get(spec.dtype.name, f"DT_{spec.dtype.name.upper()}"), "name": name,
            "tensor_shape": {"dim": dims, "unknown_rank": False}}


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def make_handler(model: Model):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: dict) -> None:
            payload = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _resolve(self):
            match = _PATH.match(self.path.split("?", 1)[0])
            if not match:
                raise RequestError(f"Malformed request: {self.command} {self.path}", 404)
            if match["name"] != model.name or (match["version"] and match["version"] != model.version):
                spec = f"Specific({match['name']}, {match['version']})" if match["version"] else \
                    f"Latest({match['name']})"
                raise RequestError(f"Servable not found for request: {spec}", 404)
            return match["suffix"]

        def do_GET(self):  # noqa: N802 (BaseHTTPRequestHandler's names)
            try:
                suffix = self._resolve()
                if suffix is None:
                    return self._reply(200, {"model_version_status": [{
                        "version": model.version, "state": "AVAILABLE",
                        "status": {"error_code": "OK", "error_message": ""}}]})
                if suffix == "/metadata":
                    return self._reply(200, model.metadata())
                raise RequestError(f"Malformed request: GET {self.path}", 405)
            except RequestError as exc:
                self._reply(exc.status, {"error": str(exc)})

        def do_POST(self):  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                suffix = self._resolve()
                if suffix in (":classify", ":regress"):
                    raise RequestError(f"{suffix[1:]} is not supported: the model has predict signatures only")
                if suffix != ":predict":
                    raise RequestError(f"Malformed request: POST {self.path}")
                try:
                    body = json.loads(raw or b"null")
                except ValueError as exc:
                    raise RequestError(f"JSON Parse error: {exc}") from None
                self._reply(200, model.predict(body))
            except RequestError as exc:
                self._reply(exc.status, {"error": str(exc)})

        def log_message(self, *args):
            pass

    return Handler


def model_path(value: str) -> str:
    path = value[len("file://"):] if value.startswith("file://") else value
    if "://" in path:
        raise SystemExit(f"savedmodel_server: MODEL_PATH={value!r}: only local paths and file:// can be served "
                         "locally")
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise SystemExit(f"savedmodel_server: {path}/saved_model.pb not found (MODEL_PATH must be the versioned "
                         "SavedModel directory, e.g. .../pushed_model/1700000000/)")
    return path


def main() -> int:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    name, raw_path = os.environ.get("MODEL_NAME", ""), os.environ.get("MODEL_PATH", "")
    if not name or not raw_path:
        print("savedmodel_server: MODEL_NAME and MODEL_PATH are required", file=sys.stderr)
        return 2
    path = model_path(raw_path)
    version = os.environ.get("MODEL_VERSION") or os.path.basename(path.rstrip("/"))
    port = int(os.environ.get("PORT", "8080"))
    model = Model(name, path, version)
    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), port), make_handler(model))
    print(f"savedmodel_server: serving {path} as {name} version {version} on port {port} "
          f"(signatures: {sorted(model.signatures)})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
