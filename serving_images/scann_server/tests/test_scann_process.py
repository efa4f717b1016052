"""The real server process: ``python -m scann_server`` (gunicorn) on a free loopback port, spoken to over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from scann_server.tests.conftest import MODEL_NAME, MODEL_VERSION, customers, env_for

SERVING_IMAGES = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_NAME", "MODEL_VERSION", "BUNDLE_PATH", "PORT")}
    env.update(extra, PYTHONPATH=SERVING_IMAGES, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    return env


def call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scann_server", "--host", "127.0.0.1", "--port", str(port)],
                                env=server_env(env_for(bundle[0], PORT="1")), stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if call(f"{base}/healthz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not healthy after 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield base, bundle[1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_predict_over_http(server):
    base, ids = server  # --port overrides PORT=1
    status, body = call(f"{base}/v1/models/{MODEL_NAME}:predict", {"instances": customers(2), "top_k": 12})
    assert status == 200, body
    for prediction in body["predictions"]:
        assert len(prediction["product_ids"]) == 12 and set(prediction["product_ids"]) <= set(ids)
        assert prediction["scores"] == sorted(prediction["scores"], reverse=True)
    rows = customers(2)
    status, body = call(f"{base}/v1/models/{MODEL_NAME}/versions/{MODEL_VERSION}:predict",
                        {"inputs": {k: [r[k] for r in rows] for k in rows[0]}, "top_k": 4})
    assert status == 200 and [len(r) for r in body["outputs"]["product_ids"]] == [4, 4]


def test_status_metadata_and_errors_over_http(server):
    base, _ = server
    status, body = call(f"{base}/v1/models/{MODEL_NAME}")
    assert status == 200 and body["model_version_status"][0]["version"] == MODEL_VERSION
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    assert body["retrieval"]["algorithm"] == "scann"
    status, body = call(f"{base}/v1/models/{MODEL_NAME}/metadata")
    assert status == 200 and body["metadata"]["retrieval"]["num_candidates"] == 3000
    status, body = call(f"{base}/v1/models/{MODEL_NAME}:predict", {"instances": [{"customer_id": "C1"}]})
    assert status == 400 and "missing feature" in body["error"] and "'city'" in body["error"]
    status, body = call(f"{base}/v1/models/nope:predict", {"instances": customers(1)})
    assert status == 404 and "Servable not found" in body["error"]


def run_cli(env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scann_server", "--port", str(free_port())], env=server_env(env),
                          capture_output=True, text=True, timeout=timeout)


def test_missing_variable_is_named_and_exits_non_zero(bundle):
    env = env_for(bundle[0])
    del env["MODEL_VERSION"]
    result = run_cli(env)
    assert result.returncode == 2
    assert "MODEL_VERSION is not set" in result.stderr


def test_incomplete_bundle_names_the_missing_file(bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bundle[0], broken)
    os.remove(broken / "candidates.npy")
    result = run_cli(env_for(str(broken)))
    assert result.returncode == 2
    assert f"{broken}/candidates.npy is missing" in result.stderr


def test_unversioned_bundle_base_is_refused_with_a_hint(bundle):
    parent = os.path.dirname(bundle[0])
    result = run_cli(env_for(f"file://{parent}"))
    assert result.returncode == 2
    assert "unversioned bundle base" in result.stderr and f"{parent}/{MODEL_VERSION}/" in result.stderr
