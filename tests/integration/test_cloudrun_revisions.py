"""Revisions and traffic on the local Cloud Run, driven only through `CloudRunServing` and the official run_v2
clients (REST transport): every revision is kept, all traffic can be sent back to an earlier ready revision without
a new revision (a rollback), a later deploy takes it back to the latest, and a revision serving traffic cannot be
deleted. The serving processes are the real scann server (`.venv-pipeline`)."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from registrar.kernel.errors import PermanentError
from registrar.kernel.serving import served_version
from test_cloudrun_emulator import (  # noqa: F401 - bundle and emulator are fixtures
    MODEL_NAME,
    PARENT,
    Emulator,
    bundle,
    emulator,
    recommend,
    serving_env,
    spec,
    wait_until,
)

REVISION_TARGET = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
READY = run_v2.Condition.State.CONDITION_SUCCEEDED


@pytest.fixture(scope="module")
def revisions(emulator) -> run_v2.RevisionsClient:  # noqa: F811
    return run_v2.RevisionsClient(transport="rest", client_options={"api_endpoint": emulator.url},
                                  credentials=AnonymousCredentials())


def labels(version: str) -> dict[str, str]:
    return {"registrar-model": "recs", "registrar-version": version}


def served_model_version(uri: str) -> str:
    status = requests.get(f"{uri}/v1/models/{MODEL_NAME}", timeout=10).json()
    return status["model_version_status"][0]["version"]


def test_every_revision_is_kept_and_listed(emulator, revisions, bundle):  # noqa: F811
    serving = emulator.serving()
    first = serving.apply_service(spec("recs-kept", bundle.path, version="1"))
    second = serving.apply_service(spec("recs-kept", bundle.path, version="2"))

    listed = list(revisions.list_revisions(parent=f"{PARENT}/services/recs-kept"))
    assert [r.name.rsplit("/", 1)[-1] for r in listed] == [second.latest_ready_revision, first.latest_ready_revision]
    assert all(r.service == f"{PARENT}/services/recs-kept" for r in listed)
    assert [{c.type_: c.state for c in r.conditions} for r in listed] == [{"Ready": READY}, {"Ready": READY}]
    old = serving.get_revision("recs-kept", first.latest_ready_revision)
    assert old is not None and old.ready and old.env["MODEL_VERSION"] == "1"
    assert old.create_time is not None and old.create_time.tzinfo is not None
    assert serving.get_revision("recs-kept", "recs-kept-99999-zzz") is None
    assert serving.get_revision("no-such-service", "no-such-service-00001-abc") is None


def test_all_traffic_goes_back_to_an_earlier_revision_and_a_deploy_takes_it_back(emulator, bundle):  # noqa: F811
    serving = emulator.serving()
    first = serving.apply_service(spec("recs-back", bundle.path, version="1"))
    second = serving.apply_service(spec("recs-back", bundle.path, version="2"))
    assert served_model_version(second.uri) == "2"

    back = serving.route_all_traffic("recs-back", first.latest_ready_revision, labels("1"))

    assert back.ready, back.message
    assert back.pinned and back.serving_revision == first.latest_ready_revision
    assert back.latest_ready_revision == second.latest_ready_revision  # no revision was created
    assert back.generation == second.generation + 1 and back.labels == labels("1")
    assert served_version(back) == "1" and served_model_version(back.uri) == "1"
    assert recommend(back.uri)["product_ids"]
    service = emulator.client().get_service(name=f"{PARENT}/services/recs-back")
    assert [(t.type_, t.revision, t.percent) for t in service.traffic_statuses] == \
        [(REVISION_TARGET, first.latest_ready_revision, 100)]
    assert [(t.type_, t.revision, t.percent) for t in service.traffic] == \
        [(REVISION_TARGET, first.latest_ready_revision, 100)]
    assert serving.get_service("recs-back") == back

    again = serving.route_all_traffic("recs-back", first.latest_ready_revision, labels("1"))
    assert (again.generation, again.serving_revision) == (back.generation, back.serving_revision)

    # Deploying version 2 again: its revision takes the traffic back, no new one is made.
    forward = serving.apply_service(spec("recs-back", bundle.path, version="2"))
    assert forward.ready and not forward.pinned
    assert forward.serving_revision == forward.latest_ready_revision == second.latest_ready_revision
    assert served_version(forward) == "2" and served_model_version(forward.uri) == "2"


def test_a_revision_serving_traffic_cannot_be_deleted_and_a_deleted_one_cannot_take_it(emulator, revisions,  # noqa: F811
                                                                                       bundle):  # noqa: F811
    serving = emulator.serving()
    first = serving.apply_service(spec("recs-prune", bundle.path, version="1"))
    second = serving.apply_service(spec("recs-prune", bundle.path, version="2"))

    with pytest.raises(gexc.BadRequest, match="serves traffic"):  # FAILED_PRECONDITION, as REST reports it
        revisions.delete_revision(name=f"{PARENT}/services/recs-prune/revisions/{second.latest_ready_revision}")
    deleted = revisions.delete_revision(
        name=f"{PARENT}/services/recs-prune/revisions/{first.latest_ready_revision}").result(timeout=30)
    assert deleted.name.endswith(first.latest_ready_revision)

    assert serving.get_revision("recs-prune", first.latest_ready_revision) is None
    with pytest.raises(PermanentError, match="not a revision of service"):
        serving.route_all_traffic("recs-prune", first.latest_ready_revision, labels("1"))
    assert serving.get_service("recs-prune").serving_revision == second.latest_ready_revision


def test_a_pinned_revision_serves_again_after_the_emulator_restarts(tmp_path, bundle):  # noqa: F811
    state_path = tmp_path / "cloudrun-state.json"
    first = Emulator(state_path, serving_env()).start()
    try:
        serving = first.serving()
        one = serving.apply_service(spec("recs-pinned", bundle.path, version="1"))
        serving.apply_service(spec("recs-pinned", bundle.path, version="2"))
        pinned = serving.route_all_traffic("recs-pinned", one.latest_ready_revision, labels("1"))
        assert pinned.serving_revision == one.latest_ready_revision
    finally:
        first.terminate()

    second = Emulator(state_path, serving_env()).start()
    try:
        client = second.client()
        name = f"{PARENT}/services/recs-pinned"
        assert wait_until(lambda: not client.get_service(name=name).reconciling, timeout=240), \
            "the restarted service never settled"
        after = second.serving().get_service("recs-pinned")
        assert after.ready and after.pinned and after.serving_revision == one.latest_ready_revision
        assert served_model_version(after.uri) == "1"
    finally:
        second.stop()
