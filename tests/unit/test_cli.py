"""The `registrar` command line without a stack: argument handling, API resolution, error reporting."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from registrar_cli.main import cli

from localcloud import processes

KPIS = {"total": 2, "blessed": 1, "deployed": 0, "idle": 1, "latest_registered_at": "2026-03-02T09:05:00+00:00"}


class FakeApi(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.startswith("/kpis"):
            self._answer(200, KPIS)
        elif self.path.startswith("/models?"):
            self._answer(400, {"error": {"code": 400, "message": "invalid parameter 'q': too long", "parameter": "q"}})
        else:
            self._answer(404, {"error": {"code": 404, "message": f"model {self.path!r} is not in the registry"}})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def no_stack(tmp_path, monkeypatch):
    """A working directory without .registrar/local.env and no REGISTRAR_API_URL."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGISTRAR_API_URL", raising=False)
    return tmp_path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("local", "demo", "kpis", "models", "show", "history", "quarantine"):
        assert command in result.stdout
    assert {"up", "down", "status"} <= set(invoke("local", "--help").stdout.split())


@pytest.mark.parametrize("args, named", [
    (("models", "--sort", "sideways"), "--sort"),
    (("models", "--type", "regression"), "--type"),
    (("models", "--status", "lost"), "--status"),
    (("models", "--page-size", "0"), "--page-size"),
    (("models", "--page-size", "many"), "--page-size"),
    (("show",), "MODEL"),
    (("history",), "MODEL"),
    (("quarantine", "--limit", "0"), "--limit"),
    (("kpis", "--bogus"), "--bogus"),
    (("nosuchcommand",), "nosuchcommand"),
])
def test_bad_arguments_print_usage_and_exit_2(no_stack, args, named):
    result = invoke(*args)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr and named in result.stderr


def test_without_an_api_the_error_says_to_start_the_stack(no_stack):
    result = invoke("kpis")
    assert result.exit_code == 1
    assert "registrar local up" in result.stderr and "--api" in result.stderr


def test_the_api_url_comes_from_local_env(no_stack, fake_api):
    (no_stack / ".registrar").mkdir()
    (no_stack / ".registrar" / "local.env").write_text(f"GOOGLE_CLOUD_PROJECT=p\nREGISTRAR_API_URL={fake_api}\n")
    result = invoke("kpis", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == KPIS


def test_the_api_url_comes_from_the_environment(no_stack, fake_api, monkeypatch):
    monkeypatch.setenv("REGISTRAR_API_URL", fake_api)
    result = invoke("kpis")
    assert result.exit_code == 0, result.output
    assert "total" in result.stdout and "2" in result.stdout


def test_api_errors_are_printed_with_the_api_message_and_exit_1(no_stack, fake_api):
    refused = invoke("models", "--search", "x" * 10, "--api", fake_api)
    assert refused.exit_code == 1 and "invalid parameter 'q': too long" in refused.stderr
    missing = invoke("show", "nope", "--api", fake_api)
    assert missing.exit_code == 1 and "is not in the registry" in missing.stderr


def test_an_unreachable_api_is_a_clear_error(no_stack):
    result = invoke("kpis", "--api", f"http://127.0.0.1:{processes.free_port()}")
    assert result.exit_code == 1 and "cannot reach the registry API" in result.stderr


def test_local_status_and_demo_without_a_stack(no_stack):
    assert "not running" in invoke("local", "status").stdout
    demo = invoke("demo")
    assert demo.exit_code == 1 and "registrar local up" in demo.stderr
    assert invoke("local", "down").stdout.strip() == "nothing was running"
