"""`registrar rollback` against a real registry API (Flask, in a thread) whose publisher hands requests straight to
the function's code path with a fake Cloud Run (the stack of test_deployment_cli)."""

from __future__ import annotations

import json

from registrar.kernel.serving import served_version
from test_deployment import MODEL
from test_deployment_cli import run, stack  # noqa: F401

SERVICE = "recs-retrieval-serving"


def _two_releases(world) -> None:
    world.add_version(MODEL, "2", run_id="run-1", minute=5)
    for version in ("1", "2"):
        result = run(world, "deploy", MODEL, "--version", version)
        assert result.exit_code == 0, result.output


def test_rollback_waits_and_says_which_version_serves_again(stack):  # noqa: F811
    _two_releases(stack)
    result = run(stack, "rollback", MODEL)
    assert result.exit_code == 0, result.output
    assert f"{SERVICE} serves version 1 again (all traffic back on its revision)" in result.stdout
    assert served_version(stack.serving.services[SERVICE]) == "1"
    table = run(stack, "endpoints", MODEL)
    releases = table.stdout[table.stdout.index("releases"):].splitlines()
    states = [(line.split("│")[2].strip(), line.split("│")[6].strip()) for line in releases if SERVICE in line]
    assert [(version, state.split(" ")[0:2]) for version, state in states] == [
        ("1", ["serving"]), ("2", ["rolled", "back"])]


def test_rollback_json_and_to_version(stack):  # noqa: F811
    _two_releases(stack)
    result = run(stack, "rollback", MODEL, "--to", "1", "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout[result.stdout.index("{\n"):])
    assert (outcome["action"], outcome["status"], outcome["rollback"]["to_version"]) == ("rollback", "deployed", "1")


def test_nothing_to_roll_back_is_an_error_with_the_reason(stack):  # noqa: F811
    result = run(stack, "rollback", MODEL)
    assert result.exit_code == 1 and "nothing to roll back" in result.output
    assert all(t != "deploy-requests" for t, _, _ in stack.publisher.published)
