"""registry_api as functions-framework serves it: the real functions-framework app built from functions/main.py
(`functions_framework.create_app`, as the `functions-framework --target registry_api` process builds it), driven
over its WSGI test client. Every answer is JSON, including those functions-framework would give itself."""

from __future__ import annotations

import sys
from pathlib import Path

import functions_framework
import pytest
from registrar.adapters.memory import InMemoryStore
from registrar.api.app import create_app

MAIN = Path(__file__).resolve().parents[2] / "functions" / "main.py"


@pytest.fixture(scope="module")
def served():
    """(functions-framework's app, the main module it loaded). The module is restored in sys.modules afterwards,
    so the rest of the suite keeps the `main` it imported."""
    saved_module, saved_path = sys.modules.get("main"), list(sys.path)
    try:
        app = functions_framework.create_app(target="registry_api", source=str(MAIN), signature_type="http")
        module = sys.modules["main"]
        # The API over an empty in-memory registry: these answers never reach Google.
        module._api_app = create_app(lambda: InMemoryStore())
        yield app, module
    finally:
        sys.path[:] = saved_path
        if saved_module is None:
            sys.modules.pop("main", None)
        else:
            sys.modules["main"] = saved_module


@pytest.fixture
def client(served):
    app, _ = served
    return app.test_client()


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json", response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == status and body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/models/a%0Ab"),
    ("GET", "/models/a%0Ab/history"),
    ("GET", "/models/a%0Ab/endpoints"),
    ("GET", "/training-runs/run%0A1"),
    ("GET", "/deployments/req%0A12345"),
    ("GET", "/schedules/sch%0A1"),
    ("PATCH", "/schedules/sch%0A1"),
    ("POST", "/schedules/sch%0A1:pause"),
    ("POST", "/models/a%0Ab/versions/1:deploy"),
    ("POST", "/models/a%0Ab:undeploy"),
    ("GET", "/%0A"),
])
def test_a_path_functions_framework_cannot_route_is_a_json_404(client, method, path):
    """functions-framework's `/<path:path>` rule does not match a newline: its own 404 answers, through the
    handler main.py registers, in the API's Error shape."""
    error = _error(client.open(path, method=method), 404)
    assert "\n" in error["message"]


def test_an_unknown_path_is_a_json_404(client):
    assert "/nowhere" in _error(client.get("/nowhere"), 404)["message"]
    _error(client.get("/favicon.ico"), 404)  # functions-framework's own rule for it
    _error(client.get("/robots.txt"), 404)


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("POST", "/kpis", {"GET", "HEAD"}),
    ("DELETE", "/models/1001", {"GET", "HEAD"}),
    ("PUT", "/schedules", {"GET", "HEAD", "POST"}),
    ("TRACE", "/models", {"GET", "HEAD"}),
    ("OPTIONS", "/models", {"GET", "HEAD"}),
    ("OPTIONS", "/schedules/sch-1", {"GET", "HEAD", "PATCH", "DELETE"}),
    ("GET", "/models/1001:undeploy", {"POST"}),
    ("PATCH", "/schedules/sch-1:pause", {"POST"}),
    ("GET", "/models/1001/versions/1:deploy", {"POST"}),
])
def test_a_method_not_served_is_a_json_405_naming_those_that_are(client, method, path, allowed):
    response = client.open(path, method=method)
    error = _error(response, 405)
    assert method in error["message"]
    assert {m.strip() for m in response.headers["Allow"].split(",")} == allowed


def test_an_unexpected_failure_is_a_json_500(served, client, caplog):
    _, module = served
    saved = module._api_app

    def broken_store():
        raise RuntimeError("the store is broken")

    module._api_app = create_app(broken_store)
    try:
        response = client.get("/kpis")
    finally:
        module._api_app = saved
    error = _error(response, 500)
    assert "broken" not in error["message"]  # the traceback goes to the log, not to the caller
    assert "the store is broken" in caplog.text


def test_the_api_still_answers_through_functions_framework(client):
    response = client.get("/kpis")
    assert response.status_code == 200 and response.get_json()["total"] == 0
    assert client.get("/healthz").get_json() == {"status": "ok"}
