"""`registrar promote / promotions / approve / reject / policy` against a real registry API (Flask, in a thread) in
production mode: who calls is the ID token in $REGISTRAR_ID_TOKEN (a fake verifier maps tokens to people)."""

from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from registrar.config import IdentitySettings
from registrar_cli.main import cli
from test_release_api import ALICE, BOB, MODEL, SEED, Api
from werkzeug.serving import make_server


@pytest.fixture
def api():
    world = Api(IdentitySettings(mode="google", audiences=("https://registry.example.com",), policy_seed=SEED))
    server = make_server("127.0.0.1", 0, world.client.application, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    world.url = f"http://127.0.0.1:{server.server_port}"
    yield world
    server.shutdown()


def run(api, token: str | None, *args):
    env = {"REGISTRAR_ID_TOKEN": token} if token else {"REGISTRAR_ID_TOKEN": ""}
    return CliRunner().invoke(cli, [*args, "--api", api.url], env=env)


def test_promote_then_approve_by_another_person(api):
    asked = run(api, "t-alice", "promote", MODEL, "--version", "2", "--alias", "production", "--reason", "better")
    assert asked.exit_code == 0, asked.output
    assert "is pending" in asked.output and ALICE in asked.output
    listed = run(api, "t-bob", "promotions", "--json")
    [promotion] = json.loads(listed.stdout)["promotions"]
    table = run(api, "t-bob", "promotions")
    assert promotion["promotion_id"] in table.stdout and "pending" in table.stdout
    own = run(api, "t-alice", "approve", promotion["promotion_id"])
    assert own.exit_code == 1 and "approver" in own.output
    approved = run(api, "t-bob", "approve", promotion["promotion_id"], "--reason", "ok")
    assert approved.exit_code == 0, approved.output
    assert "production → version 2" in approved.output and f"approved by {BOB}" in approved.output
    assert api.vertex.holder(MODEL, "production") == "2"


def test_without_a_token_production_refuses_and_says_how_to_identify(api):
    result = run(api, None, "promotions")
    assert result.exit_code == 1 and "Authorization: Bearer" in result.output


def test_reject_and_the_policy_commands(api):
    asked = run(api, "t-alice", "promote", MODEL, "--version", "2", "--alias", "production", "--reason", "x", "--json")
    pid = json.loads(asked.stdout)["promotion_id"]
    rejected = run(api, "t-bob", "reject", pid, "--reason", "not now")
    assert rejected.exit_code == 0 and f"rejected by {BOB}" in rejected.output
    granted = run(api, "t-bob", "policy", "grant", "viewer", "domain:example.com")
    assert granted.exit_code == 0, granted.output
    assert "domain:example.com" in run(api, "t-bob", "policy", "show").stdout
    protected = run(api, "t-bob", "policy", "protect", "canary", "--no-metric", "--json")
    assert json.loads(protected.stdout)["protected_aliases"]["canary"] == {"require_blessed": True,
                                                                           "metric_tolerance": None}
    assert run(api, "t-bob", "policy", "ttl", "24", "--json").exit_code == 0
    assert run(api, "t-alice", "policy", "grant", "approver", f"user:{ALICE}").exit_code == 1  # not an approver
    released = run(api, "t-bob", "policy", "release", MODEL, "--enable", "--deploy-preset", "development",
                   "--promote", "production", "--json")
    assert released.exit_code == 0, released.output
    body = json.loads(released.stdout)
    assert (body["enabled"], body["deploy"]["preset"], body["promote"]) == (True, "development",
                                                                           {"alias": "production"})
    assert "enabled" in run(api, "t-carol", "policy", "release", MODEL).stdout


def test_deploy_of_an_unblessed_version_says_the_evaluation_and_the_override_needs_a_reason(api):
    refused = run(api, "t-alice", "deploy", MODEL, "--version", "3", "--no-wait")
    assert refused.exit_code == 1 and "evaluation: not_blessed" in refused.output
    no_reason = run(api, "t-alice", "deploy", MODEL, "--version", "3", "--allow-unblessed", "--no-wait")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    allowed = run(api, "t-alice", "deploy", MODEL, "--version", "3", "--allow-unblessed", "--reason", "shadow",
                  "--no-wait")
    assert allowed.exit_code == 0, allowed.output
