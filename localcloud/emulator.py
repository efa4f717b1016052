"""What the local Google API emulators share: Google's JSON errors, the JSON state file of one project and location,
paging, timestamps, the Flask app's error handlers and `/healthz`, and the command line that serves it."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request
from werkzeug.serving import run_simple

DEFAULT_PAGE_SIZE = 100
LOCATION_PATH = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/(?P<rest>.+)$")


# -- errors -------------------------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in Google's JSON error shape."""

    HTTP = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
            "ABORTED": 409, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503}

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = self.HTTP[status]

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def invalid(message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message)


def unsupported(message: str) -> ApiError:
    return ApiError("UNIMPLEMENTED", message)


# -- time ---------------------------------------------------------------------------------------------------------


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_rfc3339(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return moment.astimezone(timezone.utc)


# -- state --------------------------------------------------------------------------------------------------------


class EmulatorState:
    """The resources of one project and location, kept in a JSON file. One lock serialises requests: the emulators
    favour simple correctness over throughput."""

    def __init__(self, state_path: str | os.PathLike, project: str, location: str,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.path = Path(state_path)
        self.project = project
        self.location = location
        self.clock = clock
        self.lock = threading.RLock()

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def read_file(self) -> dict[str, Any]:
        """What the state file holds; {} when it is missing or empty."""
        if self.path.exists() and self.path.stat().st_size:
            return json.loads(self.path.read_text())
        return {}

    def load_data(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """`defaults` updated with the state file, which must be of this project and location (or name none)."""
        data = dict(defaults)
        loaded = self.read_file()
        if loaded:
            if (loaded.get("project"), loaded.get("location")) not in ((self.project, self.location), (None, None)):
                raise ValueError(f"{self.path} holds projects/{loaded.get('project')}/locations/"
                                 f"{loaded.get('location')}, not {self.parent}")
            data.update(loaded)
        data["project"], data["location"] = self.project, self.location
        return data

    def write_file(self, data: Any, **dump_options: Any) -> None:
        """Replace the state file with `data` at once, so a crash never leaves half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, sort_keys=True, **dump_options)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def listing(key: str, items: list[dict[str, Any]], page_size: Any, page_token: str | None, *,
            max_size: int) -> dict[str, Any]:
    """One page of `items` as a List response: `{key: [...], "nextPageToken": ...}` (no token on the last page)."""
    try:
        size = int(page_size or 0)
    except ValueError:
        raise invalid(f"pageSize {page_size!r} is not a number") from None
    if size < 0:
        raise invalid("pageSize must not be negative")
    size = min(size or DEFAULT_PAGE_SIZE, max_size)
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode()).decode().removeprefix("offset:"))
        except ValueError:
            raise invalid(f"pageToken {page_token!r} is invalid") from None
    following = start + size
    result: dict[str, Any] = {key: items[start:following]}
    if following < len(items):
        result["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{following}".encode()).decode()
    return result


# -- HTTP ---------------------------------------------------------------------------------------------------------


def create_flask_app(import_name: str, project: str, location: str,
                     health: Callable[[], dict[str, Any]] | None = None) -> Flask:
    """A Flask app answering errors in Google's shape, with `/healthz` (plus what `health` adds)."""
    app = Flask(import_name)

    @app.errorhandler(ApiError)
    def on_api_error(error: ApiError):
        return jsonify(error.body()), error.code

    @app.errorhandler(404)
    def on_unknown_path(_error):
        return on_api_error(ApiError("NOT_FOUND", f"{request.method} {request.path} is not part of the emulated API"))

    @app.errorhandler(405)
    def on_unknown_method(_error):
        return jsonify({"error": {"code": 405, "message": f"{request.method} {request.path} is not supported",
                                  "status": "UNIMPLEMENTED"}}), 405

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok", "project": project, "location": location, **(health() if health else {})})

    return app


def json_body() -> dict[str, Any]:
    """The request's JSON object ({} without a body)."""
    body = request.get_json(silent=True, force=True)
    if body is None:
        if request.get_data():
            raise invalid("request body is not JSON")
        return {}
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object")
    return body


def location_relative(path: str, project: str, location: str) -> str:
    """`projects/P/locations/L/rest` → `rest`, for this emulator's project and location only."""
    match = LOCATION_PATH.match(path)
    if not match:
        raise ApiError("NOT_FOUND", f"unknown resource {path!r}")
    if (match["project"], match["location"]) != (project, location):
        raise ApiError("NOT_FOUND", f"this emulator serves projects/{project}/locations/{location}, "
                       f"not projects/{match['project']}/locations/{match['location']}")
    return match["rest"]


# -- command line -------------------------------------------------------------------------------------------------


def command_line(prog: str, description: str, state_help: str, *,
                 pubsub_help: str | None = None) -> argparse.ArgumentParser:
    """The options every emulator takes; `pubsub_help` adds --pubsub-emulator-host (default $PUBSUB_EMULATOR_HOST)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True, help=state_help)
    parser.add_argument("--project", required=True)
    parser.add_argument("--location", required=True)
    if pubsub_help is not None:
        parser.add_argument("--pubsub-emulator-host", default=os.environ.get("PUBSUB_EMULATOR_HOST"),
                            help=pubsub_help)
    return parser


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(app: Flask, host: str, port: int, cleanup: Callable[[], None]) -> None:
    """Serve until stopped, then run `cleanup`."""
    # `registrar local down` stops an emulator with SIGTERM: leave through `finally` so `cleanup` runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run_simple(host, port, app, threaded=True)
    finally:
        cleanup()
