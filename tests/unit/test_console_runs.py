"""The console's training-run page over the real API app (Flask test client) on the in-memory registry of the run
control tests: what it shows is what `GET /training-runs/{id}` and its `/logs` answer, untrusted strings stay
text, cancel and rerun are offered to an operator only and only when the API would take them, and the model and
schedules pages link to runs. The browser tests (tests/e2e/test_console_browser.py) use the page in Chromium."""

from __future__ import annotations

import copy
import re
from html import unescape

import pytest
from fakes import at
from helpers import deliver, envelope
from registrar.config import IdentitySettings
from registrar.console.figures import epoch_charts, epoch_columns
from registrar.console.pages import ASSETS_VERSION, rerun_fields
from registrar.kernel.paths import run_path, schedule_path
from registrar.registration.control import cancellable, rerunnable
from test_console import ESCAPED, HOSTILE, _described, parsed
from test_run_control import CONFIG, EPOCHS, SEED, ControlledRunner, Registry, event

EVALUATION = {
    "blessed": False, "evaluator": "tfma", "split": "test",
    "baseline": {"version": "3", "model_uri": "gs://b/3/", "used": True},
    "thresholds": [
        {"metric": "recall_at_100", "kind": "value", "comparator": ">=", "threshold": 0.25, "achieved": 0.3,
         "margin": 0.05, "passed": True},
        {"metric": "recall_at_100", "kind": "change", "comparator": ">=", "threshold": 0.35, "achieved": 0.3,
         "margin": -0.05, "passed": False},
    ],
}
LINEAGE = {"hyperparameters": {"embedding_dim": 32, "learning_rate": 0.1},
           "data": {"rows": {"train": 800, "test": 200}, "fingerprint": "sha256:" + "a" * 64},
           "versions": {"tfx": "1.16.0"}}


def page(world: Registry, url: str, token: str | None = "t-alice", status: int = 200) -> str:
    response = world.call("GET", url, token)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def cells(html: str, table: str) -> list[list[str]]:
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [[unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[hd]\b[^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr\b[^>]*>(.*?)</tr>", body, re.S)]


@pytest.fixture
def world() -> Registry:
    """Production identity: alice is an operator, carol a viewer. run-1 succeeded with per-epoch metrics, an
    evaluation and lineage; run-2 is running."""
    world = Registry(identity=IdentitySettings(mode="google", audiences=("https://world.example.com",),
                                               policy_seed=SEED))
    deliver(world.services, "on_pipeline_event", envelope(event("SUCCEEDED", epochs=EPOCHS)))
    world.store.set(run_path("run-1"), {**world.run("run-1"), "training_config": CONFIG, "evaluation": EVALUATION,
                                        "lineage": LINEAGE, "baseline_version": "3",
                                        "baseline": {"version": "3", "model_uri": "gs://b/3/", "alias": "production",
                                                     "resolved_at": at(0)}})
    world.finished_run("run-2", "RUNNING")
    return world


# ---------------------------------------------------------------------------------------------------------------
# What the page shows is what the API answers


def test_the_run_page_shows_the_apis_run(world):
    html = page(world, "/console/runs/run-1")
    run = world.call("GET", "/training-runs/run-1", "t-carol").get_json()
    assert re.search(r'id="run-status">SUCCEEDED<', html)
    columns = epoch_columns(run["epochs"])
    assert columns == [("train", "loss"), ("validation", "loss"), ("validation", "recall_at_100")]
    table = cells(html, "epochs-table")
    assert [row[0] for row in table] == [str(e["epoch"]) for e in run["epochs"]]
    values = re.findall(r'<tr data-epoch="(\d+)">(.*?)</tr>', html, re.S)
    for (number, row), epoch in zip(values, run["epochs"], strict=True):
        assert int(number) == epoch["epoch"]
        found = {(s, m): float(v) for s, m, v in re.findall(r'data-split="(\w+)" data-metric="(\w+)" data-value="([^"]+)"',
                                                             row)}
        assert found == {(s, m): v for s in ("train", "validation") for m, v in (epoch.get(s) or {}).items()}
    dots = re.findall(r'<circle class="dot dot-(\w+)"[^>]*data-epoch="(\d+)" data-value="([^"]+)"', html)
    assert sorted((s, int(e), float(v)) for s, e, v in dots) == sorted(
        (s, e["epoch"], v) for e in run["epochs"] for s in ("train", "validation") for v in (e.get(s) or {}).values())
    assert len(re.findall(r'<figure class="chart epoch-chart" data-metric="', html)) == 2  # loss, recall_at_100
    history = [e["kind"] for e in run["history"]]
    assert [row[2] for row in cells(html, "timeline-table")] == history and history
    thresholds = cells(html, "thresholds-table")
    assert [(t[0], t[1], t[3], t[4], t[5]) for t in thresholds] == [
        ("recall_at_100", "value", "0.3", "+0.05", "✓ passed"), ("recall_at_100", "change", "0.3", "-0.05", "✗ failed")]
    assert "not blessed</span> on the test split; baseline version 3" in html
    assert 'id="run-baseline">version 3 (production)<' in html
    assert [row[0] for row in cells(html, "config-table")] == sorted(CONFIG)
    assert "embedding_dim" in html and "sha256:" + "a" * 64 in html and "tfx=1.16.0" in html


def test_reruns_link_both_ways_and_the_schedule_is_linked(world):
    world.store.set(schedule_path("sch-00000000000000000000"), {"schedule_id": "sch-00000000000000000000"})
    world.store.set(run_path("run-1"), {**world.run("run-1"), "schedule_id": "sch-00000000000000000000"})
    accepted = world.call("POST", "/training-runs/run-1:rerun", "t-alice", json={"training_config": {"epochs": 5}})
    assert accepted.status_code == 202
    for payload in world.published():
        world.deliver(envelope(payload))
    new_id = accepted.get_json()["training_run_id"]
    original = page(world, "/console/runs/run-1")
    assert f'id="run-reruns"><a href="/console/runs/{new_id}">{new_id}</a>' in original
    assert 'href="/console/schedules#schedule-sch-00000000000000000000"' in original
    rerun = page(world, f"/console/runs/{new_id}", "t-carol")
    assert 'id="run-rerun-of"><a href="/console/runs/run-1">run-1</a>' in rerun
    assert 'id="run-requested-by">alice@example.com<' in rerun


def test_the_log_is_the_last_lines_escaped_or_the_cloud_logging_link(world):
    html = page(world, "/console/runs/run-2")
    log = unescape(re.search(r'<pre class="raw" id="run-log">(.*?)</pre>', html, re.S).group(1)).split("\n")
    assert log == world.call("GET", "/training-runs/run-2/logs", "t-carol").get_json()["lines"]
    assert log[0] == "line 201" and log[-1] == "line 300"
    cloud = Registry(ControlledRunner(logs="cloud"))
    cloud.finished_run("run-1", "SUCCEEDED")
    link = cloud.call("GET", "/training-runs/run-1/logs").get_json()["location"]
    assert f'<a href="{link}" rel="noopener noreferrer" target="_blank">' in page(cloud, "/console/runs/run-1", None)
    none = Registry(ControlledRunner(logs="none"))
    none.finished_run("run-1", "SUCCEEDED")
    assert 'id="run-log-none">No logs: the configured pipeline runner keeps none' in page(none, "/console/runs/run-1",
                                                                                         None)


# ---------------------------------------------------------------------------------------------------------------
# Actions: for an operator, when the API would take them


def test_a_viewer_sees_no_action(world):
    for run_id in ("run-1", "run-2"):
        html = page(world, f"/console/runs/{run_id}", "t-carol")
        assert 'id="cancel-form"' not in html and 'id="rerun-form"' not in html
        assert "need the operator role" in html


def test_an_operator_may_cancel_a_running_run_and_rerun_one_that_ended(world):
    running = page(world, "/console/runs/run-2")
    assert 'id="cancel-form"' in running and 'id="rerun-form"' not in running
    ended = page(world, "/console/runs/run-1")
    assert 'id="cancel-form"' not in ended and 'id="rerun-form"' in ended
    fields = re.findall(r'class="rerun-field"[^>]*data-key="(\w+)" data-type="(\w+)" data-original="([^"]*)"', ended)
    assert fields == [("batch_size", "integer", "128"), ("epochs", "integer", "3"),
                      ("model_type", "string", "retrieval"), ("retrieval_algorithm", "string", "brute_force")]
    assert re.search(r'id="rerun-epochs"[^>]*value="3"', ended)
    # once a cancel is requested, the page offers no second one
    assert world.call("POST", "/training-runs/run-2:cancel", "t-alice", json={}).status_code == 202
    for payload in world.published():
        world.deliver(envelope(payload))
    html = page(world, "/console/runs/run-2")
    assert 'id="cancel-form"' not in html and "A cancel was requested" in html
    assert 'id="run-cancel-requested">by alice@example.com' in html


def test_the_page_offers_exactly_what_the_api_accepts():
    for status, asked, model in [("RUNNING", None, "m"), (None, None, "m"), ("RUNNING", {"by": "a"}, "m"),
                                 ("SUCCEEDED", None, "m"), ("FAILED", None, "m"), ("CANCELLED", None, None)]:
        world = Registry()
        run = {"training_run_id": "run-1", "status": status, "model_name": model, "model_type": "retrieval"}
        if asked:
            run["cancel_requested"] = asked
        world.store.set(run_path("run-1"), {**run, "created_at": at(1), "status_at": at(1), "metrics": {},
                                            "artifacts": {}, "blessed": None, "routes": [], "updated_at": at(1)})
        html = page(world, "/console/runs/run-1", None)
        assert ('id="cancel-form"' in html) == cancellable(run)
        assert ('id="rerun-form"' in html) == rerunnable(run)
        cancel = world.call("POST", "/training-runs/run-1:cancel", json={})
        rerun = world.call("POST", "/training-runs/run-1:rerun", json={})
        if cancellable(run):
            assert cancel.status_code == 202
        if rerunnable(run):
            assert rerun.status_code == 202
        else:
            assert rerun.status_code == 409


def test_rerun_fields_are_the_overridable_scalars_of_the_rerun_base():
    run = {"model_type": "ranking", "training_config": {"epochs": 2, "learning_rate": 0.05, "dataflow": False,
                                                        "note": "x", "interactions": ["a", "b"]}}
    assert [(f["key"], f["type"], f["text"]) for f in rerun_fields(run)] == [
        ("dataflow", "boolean", "false"), ("epochs", "integer", "2"), ("learning_rate", "number", "0.05"),
        ("model_type", "string", "ranking")]


def test_epoch_charts_draw_each_split_and_put_the_lowest_value_at_the_bottom():
    [loss, recall] = epoch_charts(EPOCHS)
    assert (loss["name"], [s["split"] for s in loss["series"]]) == ("loss", ["train", "validation"])
    ys = {(s["split"], d["epoch"]): d["y"] for s in loss["series"] for d in s["dots"]}
    assert ys[("validation", 1)] == loss["top"] and ys[("train", 2)] == loss["base_y"]  # 2.1 highest, 1.5 lowest
    assert [s["split"] for s in recall["series"]] == ["validation"]
    assert epoch_charts([]) == [] and epoch_columns([]) == []
    [single] = epoch_charts([{"epoch": 1, "validation": {"loss": 1.0}}])
    assert single["series"][0]["dots"][0]["y"] == (single["top"] + single["base_y"]) / 2


# ---------------------------------------------------------------------------------------------------------------
# Safety, errors, the description


def test_hostile_strings_of_a_run_stay_text(world):
    world.store.set(run_path("run-1"), {**world.run("run-1"), "model_name": HOSTILE, "error_message": HOSTILE,
                                        "rerun_reason": HOSTILE, "requested_by": HOSTILE,
                                        "training_config": {**CONFIG, "note": HOSTILE, "interactions": HOSTILE},
                                        "epochs": [{"epoch": 1, "train": {HOSTILE: 1.0}}]})
    world.runner.log_tail = lambda run, lines: [HOSTILE, "</pre><script>alert(2)</script>"]
    html = page(world, "/console/runs/run-1")
    assert HOSTILE not in html and ESCAPED in html and "<script>alert" not in html
    assert re.findall(r"<script\b[^>]*>", html) == [f'<script src="/console/static/console.js?v={ASSETS_VERSION}" defer>']
    found = parsed(html)
    assert found["handlers"] == [] and found["tags"] & {"img", "b", "i"} == set()
    assert f'data-original="{ESCAPED}"' in html  # the rerun form's field: text too


def test_an_unknown_run_is_a_404_page_and_a_bad_id_a_400(world):
    html = page(world, "/console/runs/nope", status=404)
    assert "training run nope is not in the registry" in html and 'role="alert"' in html
    api = world.call("GET", "/training-runs/nope", "t-alice")
    assert api.status_code == 404 and api.get_json()["error"]["code"] == 404
    assert "invalid parameter &#39;run_id&#39;" in page(world, "/console/runs/bad.id", status=400)
    assert "invalid parameter &#39;x&#39;" in page(world, "/console/runs/run-1?x=1", status=400)
    assert world.call("GET", "/console/runs/run-1", None).status_code == 401  # a viewer at least


@pytest.mark.parametrize("url", ["/console/runs/run-1", "/console/runs/run-2", "/console/runs/nope",
                                 "/console/runs/bad.id", "/console/runs/run-1?x=1"])
def test_the_run_page_answers_as_openapi_describes(world, url):
    response = world.call("GET", url, "t-carol")
    described = _described("GET", url, world.client.application)
    assert str(response.status_code) in described, (url, response.status_code)
    assert response.mimetype in described[str(response.status_code)]["content"]


def test_a_get_of_the_run_page_changes_nothing(world):
    world.call("GET", "/kpis", "t-alice")  # the access policy is seeded by the first request that needs it
    before = copy.deepcopy(world.store.docs)
    published = list(world.publisher.published)
    for url in ("/console/runs/run-1", "/console/runs/run-2", "/console/runs/nope"):
        world.call("GET", url, "t-alice")
    assert world.store.docs == before and world.publisher.published == published
    assert world.runner.cancels == [] and list(world.runner.pipelines) == []


# ---------------------------------------------------------------------------------------------------------------
# Links to runs


def test_the_schedules_page_links_the_last_run(world):
    world.store.set(schedule_path("sch-00000000000000000000"), {
        "schedule_id": "sch-00000000000000000000", "name": "nightly", "model_name": "recs", "status": "active",
        "schedule_type": "daily", "schedule_time": "02:00", "timezone": "UTC", "last_run_id": "run-1",
        "created_at": at(0), "updated_at": at(0)})
    html = page(world, "/console/schedules")
    assert 'last: <a class="run-link" href="/console/runs/run-1">run-1</a>' in html
    assert 'id="schedule-sch-00000000000000000000"' in html


def test_the_model_and_schedules_pages_offer_only_the_actions_of_the_callers_roles(world):
    """Deploy / undeploy / roll back / promote need the operator role, schedule actions too: a viewer is not offered
    them (the API would answer 403), an operator is."""
    from helpers import upload_entries

    for entry in upload_entries(world.services.registry, "recs", "1", at(3), labels={"model_type": "retrieval"}):
        deliver(world.services, "on_model_audit_event", envelope(entry))
    world.store.set(schedule_path("sch-00000000000000000000"), {
        "schedule_id": "sch-00000000000000000000", "name": "nightly", "model_name": "recs", "status": "active",
        "schedule_type": "daily", "schedule_time": "02:00", "timezone": "UTC", "created_at": at(0),
        "updated_at": at(0)})
    forms = ('id="deploy-form"', 'id="undeploy-form"', 'id="promote-form"')

    operator = page(world, "/console/models/recs", "t-alice")
    assert all(form in operator for form in forms) and "need the operator role" not in operator
    viewer = page(world, "/console/models/recs", "t-carol")
    assert not any(form in viewer for form in forms)
    assert "Deploying, undeploying and rolling back need the operator role." in viewer
    assert "Promoting needs the operator role." in viewer

    assert 'data-action="trigger"' in page(world, "/console/schedules", "t-alice")
    assert 'class="schedule-action"' not in page(world, "/console/schedules", "t-carol")
