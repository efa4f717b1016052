"""schemathesis against registry_api on the local stack: schemas/openapi.yaml loaded from disk, its examples,
coverage and fuzzing phases, every answer checked.

Checks: no 5xx (not_a_server_error), documented status codes, documented content types, response schema
conformance, the 405s (unsupported_method, allow_header_conformance), schema-violating requests refused
(negative_data_rejection) and schema-valid requests accepted (described_data_acceptance: positive_data_acceptance
except a 400 for a rule the description documents as one JSON Schema cannot say; see schemathesis_hooks.py).

The stack is this module's own (`vertex_stack` is module-scoped): the fuzzing deploys, promotes, edits the policies,
creates, edits, triggers and deletes schedules, and nothing of it outlives the module. Scheduled runs go through the EventEmittingRunner, so
a schedule the fuzzing creates never starts a TFX pipeline. The stack is seeded with the demo story, a schedule
and a deploy request, and their ids are offered to the path parameters half of the time, so operations reach
their documents rather than only their 404s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from flow_helpers import eventually, with_events_runner

from localcloud import demo

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # about 3 minutes: `make test-slow`, its own CI step

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = ROOT / "schemas" / "openapi.yaml"
PHASES = "examples,coverage,fuzzing"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "unsupported_method,allow_header_conformance,negative_data_rejection,described_data_acceptance")
MAX_EXAMPLES = 40  # per operation and phase; about two minutes on the 2-core machine
SEED = 20261130  # the same cases on every run; set SCHEMATHESIS_SEED to explore others
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    # With the Vertex AI emulator, as `registrar local up` runs it: promotions move aliases there.
    return with_events_runner(request, tmp_path_factory, "vertex_stack")


@pytest.fixture(scope="module")
def seeded(stack, tmp_path_factory) -> dict[str, list[str]]:
    """Documents for the operations to find: a model with versions and a training run (the demo story), a
    schedule with its history, a recorded deploy request."""
    state = demo.run(stack.env, artifacts_root=tmp_path_factory.mktemp("artifacts"), timeout=90,
                     say=lambda _message: None)
    model_id = state["model"]["model_id"]
    run_id = state["training_run"]["training_run_id"]
    at = (datetime.now(timezone.utc) + timedelta(hours=12)).strftime("%H:%M")  # no tick during the run
    schedules = []
    for model_name in ("fuzz_recs", "fuzz_deleted"):  # the second one is DELETE's, so the first one stays
        created = requests.post(f"{stack.api}/schedules", json={
            "name": "fuzzed schedule", "model_name": model_name, "training_config": {"model_type": "retrieval"},
            "schedule_type": "daily", "schedule_time": at, "request_id": f"seed-{model_name}"}, timeout=60)
        assert created.status_code == 201, created.text
        schedules.append(created.json()["schedule_id"])
    deploy = requests.post(f"{stack.api}/models/{model_id}/versions/2:deploy",
                           json={"preset": "development", "request_id": "fuzz-seed-deploy"}, timeout=30)
    assert deploy.status_code == 202, deploy.text
    eventually(lambda: requests.get(f"{stack.api}/deployments/fuzz-seed-deploy", timeout=10).status_code == 200,
               what="the deploy request is recorded")
    return {"model_id": [model_id], "version_id": ["1", "2"], "run_id": [run_id], "schedule_id": [schedules[0]],
            "deleted_schedule_id": [schedules[1]], "request_id": ["fuzz-seed-deploy"]}


def _config(path: Path, seeded: dict[str, list[str]]) -> Path:
    """The seeded ids as schemathesis dictionaries, drawn for the path parameters half of the time; DELETE
    /schedules/{schedule_id} gets its own schedule. (Body fields get none: a drawn value could turn a body the
    schemas allow into one they refuse, e.g. a source run next to a training config.)"""
    def binding(name: str) -> str:
        return f'{{ dictionary = "{name}", probability = 0.5 }}'

    lines = ["[dictionaries]"]
    lines += [f"{name} = {{ values = [{', '.join(f'{v!r}' for v in values)}] }}" for name, values in seeded.items()]
    lines += ["", "[parameters]"]
    lines += [f'"path.{name}" = {binding(name)}' for name in seeded if name != "deleted_schedule_id"]
    lines += ["", "[[operations]]", 'include-operation-id = "deleteSchedule"',
              f'parameters = {{ "path.schedule_id" = {binding("deleted_schedule_id")} }}']
    path.write_text("\n".join(lines).replace("'", '"') + "\n")
    return path


def _schemathesis(stack, config: Path, tmp_path: Path, name: str, *selection: str) -> str:
    """Run schemathesis over the operations `selection` picks; its output (the test fails on any finding)."""
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "--no-color", "run",
        str(OPENAPI), "--url", stack.api, "--phases", PHASES, "--checks", CHECKS, *selection,
        "--max-examples", str(MAX_EXAMPLES), "--seed", os.environ.get("SCHEMATHESIS_SEED", str(SEED)),
        "--workers", "1", "--generation-database", "none", "--request-timeout", "60",
        "--report", "junit", "--report-dir", str(tmp_path / f"report-{name}"),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    started = time.monotonic()
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    elapsed = time.monotonic() - started
    print(result.stdout[-20000:], result.stderr[-5000:], f"schemathesis ({name}) ran {elapsed:.0f}s", sep="\n")
    assert result.returncode == 0, f"schemathesis found problems (exit {result.returncode}); its report is above"
    assert "Unresolvable" not in result.stdout  # every $ref of openapi.yaml resolved from the repository
    assert "No operations" not in result.stdout
    return result.stdout


def test_schemathesis_finds_nothing(stack, seeded, tmp_path):
    config = _config(tmp_path / "schemathesis.toml", seeded)
    # Each accepted rerun starts a run that registers a new version of the seeded model a moment later: fuzzed among
    # the other operations, those registrations would contend with every write the fuzzing makes to that model's
    # document. Reruns are fuzzed on their own, after them.
    # Saving the access policy can take every role away from the local caller, after which every other operation
    # would answer only 401 / 403: it is fuzzed on its own, last.
    _schemathesis(stack, config, tmp_path, "all but reruns and the access policy",
                  "--exclude-operation-id", "putPolicy", "--exclude-operation-id", "rerunTrainingRun")
    _schemathesis(stack, config, tmp_path, "reruns", "--include-operation-id", "rerunTrainingRun")
    kpis = requests.get(f"{stack.api}/kpis", timeout=30)
    assert kpis.status_code == 200, f"the local caller lost its roles during the run: {kpis.text}"
    _schemathesis(stack, config, tmp_path, "the access policy", "--include-operation-id", "putPolicy")
