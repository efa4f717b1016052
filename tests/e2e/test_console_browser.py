"""The operator console in a real browser (headless Debian Chromium through Selenium) against the local stack with
the Vertex AI and Cloud Run emulators: real HTTP, real emulators, the real aiplatform client.

What the pages show is compared with what the JSON API answers at the same moment: the console must never count
anything itself. Every visit checks that no dialog opened and nothing was logged as an error, and writes a
screenshot under the test's temporary folder.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from console_browser import Browser
from flow_helpers import eventually, vertex_registry, with_events_runner
from registrar.registration.upload import model_id_for, serving_image
from serving_bundle import ServingBundle, build_serving_bundle

from localcloud import demo
from localcloud.demo import pipeline_run_event

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

HOSTILE = '<img src=x onerror=alert(1)><script>alert("xss")</script>'
HOSTILE_ID = "hostile-name"
EXTRA_MODELS = [  # (display name, labels): enough models to filter, search and page
    ("ranking_alpha", {"model_type": "ranking", "blessed": "true", "metric_rmse": "0_91"}),
    ("ranking_beta", {"model_type": "ranking", "blessed": "false", "metric_rmse": "1_2"}),
    ("recs_gamma", {"model_type": "retrieval", "blessed": "true", "metric_recall_at_100": "0_33"}),
    ("multitask_delta", {"model_type": "multitask"}),
]
SERVED_MODEL = "console_served_retrieval"
VERSION_DIRS = ("1764000000", "1764000100")  # two versions of the served model, from two runs
WEEKLY_ZONE = "Europe/Warsaw"
DEPLOY_STATUS_404 = r"/deployments/[A-Za-z0-9_-]+ .*404"  # polled until on_deploy_request records the request
APPROVE_403 = r"/promotions/prm-[0-9a-f]+:approve .*403"  # the requester's own approval, refused


# ---------------------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    """The stack after the demo story, with a few more models uploaded through the aiplatform client, every
    message they caused handled. Runs it submits (a schedule triggered, a rerun) are the events runner's: their
    events, per-epoch metrics included, arrive at once and no pipeline runs."""
    vertex_stack = with_events_runner(request, tmp_path_factory, "vertex_stack")
    with vertex_stack.deliveries() as deliveries:
        state = demo.run(vertex_stack.env, artifacts_root=vertex_stack.state_dir / "artifacts", timeout=120,
                         say=lambda _message: None)
        vertex_stack.demo_model_id = state["model"]["model_id"]
        registry = vertex_registry(vertex_stack)
        for name, labels in EXTRA_MODELS:
            registry.upload_version(display_name=name, artifact_uri=f"gs://registrar-console-test/{name}/1/",
                                    labels=labels, serving_image=serving_image("scann"), model_id=model_id_for(name))
        eventually(lambda: vertex_stack.get("/kpis")["total"] == 1 + len(EXTRA_MODELS), timeout=90,
                   what="the extra models registered")
        deliveries.settle()
    return vertex_stack


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = Browser(tmp_path_factory.mktemp("chromium-profile"), tmp_path_factory.mktemp("console-screenshots"))
    yield chromium
    chromium.quit()


@pytest.fixture(autouse=True)
def screenshots_here(browser, tmp_path):
    """Each test's screenshots go under its own temporary folder."""
    browser.screenshots = tmp_path
    yield
    print(f"console screenshots: {tmp_path}")


@pytest.fixture(scope="module")
def weekly(stack) -> dict:
    """A weekly schedule on the day after tomorrow (in its zone), created through the API: never today, so which of
    its runs lie ahead does not depend on the hour the test runs at."""
    from zoneinfo import ZoneInfo

    today = datetime.now(timezone.utc).astimezone(ZoneInfo(WEEKLY_ZONE)).date()
    created = requests.post(f"{stack.api}/schedules", json={
        "name": "console weekly", "model_name": "console_weekly_model",
        "training_config": {"model_type": "retrieval", "epochs": 1}, "schedule_type": "weekly",
        "day_of_week": (today.weekday() + 2) % 7, "schedule_time": "09:00", "timezone": WEEKLY_ZONE}, timeout=60)
    assert created.status_code == 201, created.text
    return created.json()


def api_models(stack, **params) -> dict:
    return stack.get("/models", **{k: v for k, v in params.items() if v not in (None, "")})


def choose(browser, css: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(browser.find(css)).select_by_value(value)


def type_into(browser, css: str, value: str) -> None:
    field = browser.find(css)
    field.clear()
    field.send_keys(value)


def table_ids(browser) -> list[str]:
    return browser.attrs("#models-table tbody tr[data-model-id]", "data-model-id")


# ---------------------------------------------------------------------------------------------------------------
# Overview


def test_overview_kpis_equal_the_api(stack, browser):
    browser.visit(stack.api + "/console/", "overview")
    kpis = stack.get("/kpis")
    for key in ("total", "blessed", "deployed", "idle"):
        shown = browser.find(f'[data-kpi="{key}"]').text
        assert shown == ("unknown" if kpis[key] is None else str(kpis[key])), key
    stamp = browser.find('[data-kpi="latest_registered_at"] time').get_attribute("datetime")
    assert datetime.fromisoformat(stamp) == datetime.fromisoformat(kpis["latest_registered_at"])
    assert browser.find('[data-count="quarantine"]').text == str(len(stack.get("/quarantine", limit=500)["messages"]))
    assert "none has run yet" in browser.find("#audit-headline").text  # no audit ran on this stack


def test_root_redirects_to_the_console(stack, browser):
    browser.visit(stack.api + "/", "root")
    assert browser.driver.current_url == stack.api + "/console/"


@pytest.mark.parametrize(("model_type", "status", "q", "sort"), [
    ("", "all", "", "latest"),
    ("ranking", "all", "", "name"),
    ("", "blessed", "", "best_metric"),
    ("", "not_blessed", "", "oldest"),
    ("retrieval", "all", "", "name"),
    ("", "all", "RANKING_", "name"),
    ("", "all", "gamma", "latest"),
    ("", "deleted", "", "latest"),
])
def test_filters_and_search_give_what_models_gives(stack, browser, model_type, status, q, sort):
    browser.visit(stack.api + "/console/", "overview-before-filter")
    choose(browser, "#f-type", model_type)
    choose(browser, "#f-status", status)
    type_into(browser, "#f-q", q)
    choose(browser, "#f-sort", sort)
    browser.find(".filters button[type=submit]").click()
    browser.wait_ready()
    browser.assert_clean("filtered overview")
    browser.screenshot(f"filtered-{model_type or 'any'}-{status}-{q or 'all'}-{sort}")
    expected = api_models(stack, model_type=model_type, status=status, q=q, sort=sort, page_size=25)
    assert table_ids(browser) == [m["model_id"] for m in expected["models"]]
    assert browser.find("#models-count").text.startswith(f"{expected['total_size']} model")
    if q:
        assert expected["models"], "the search must find something for this test to mean anything"


def test_paging_follows_the_api_page_tokens(stack, browser):
    browser.visit(stack.api + "/console/?sort=name&page_size=2", "page-1")
    pages_shown = [table_ids(browser)]
    while browser.find_all("#next-page"):
        browser.find("#next-page").click()
        browser.wait_ready()
        browser.assert_clean("next page")
        browser.screenshot(f"page-{len(pages_shown) + 1}")
        pages_shown.append(table_ids(browser))
        assert len(pages_shown) < 20
    pages_api = []
    token = None
    while True:
        body = api_models(stack, sort="name", page_size=2, page_token=token)
        pages_api.append([m["model_id"] for m in body["models"]])
        token = body["next_page_token"]
        if not token:
            break
    assert pages_shown == pages_api
    assert len(pages_api) >= 3
    browser.find("#first-page").click()
    browser.wait_ready()
    assert table_ids(browser) == pages_api[0]


# ---------------------------------------------------------------------------------------------------------------
# The demo's model


def test_demo_model_page_shows_versions_aliases_and_history(stack, browser):
    from selenium.webdriver.common.by import By

    model_id = stack.demo_model_id
    browser.visit(stack.api + "/console/?sort=latest&page_size=200", "overview-all")
    browser.find(f'#models-table tr[data-model-id="{model_id}"] th a').click()
    browser.wait_ready()
    browser.assert_clean("model page")
    browser.screenshot("demo-model")
    assert browser.driver.current_url == f"{stack.api}/console/models/{model_id}"

    model = stack.get(f"/models/{model_id}")
    assert browser.find("#model-name").text == model["display_name"]
    rows = {r.get_attribute("data-version-id"): r for r in browser.find_all("#versions-table tbody tr[data-version-id]")}
    assert sorted(rows) == sorted(v["version_id"] for v in model["versions"]) == ["1", "2"]
    states = {vid: row.find_elements(By.CSS_SELECTOR, "td")[0].text for vid, row in rows.items()}
    assert states == {"1": "deleted", "2": "live"}
    assert "default" in rows["2"].text and "production" in rows["2"].text
    aliases = browser.find("#model-aliases").text
    for alias, version in model["aliases"].items():
        assert f"{alias} → version {version}" in aliases

    history = stack.get(f"/models/{model_id}/history")["history"]
    shown = browser.texts("#history-table tbody th[scope=row]")
    assert shown == [e["kind"] for e in reversed(history)] and len(shown) >= 4
    lineage = browser.find("#lineage-table").text
    assert model["lineage"][0]["training_run"]["training_run_id"] in lineage
    assert browser.find_all(".chart svg"), "the metrics chart across versions"


# ---------------------------------------------------------------------------------------------------------------
# Hostile names


def test_a_hostile_model_name_renders_as_text_and_runs_nothing(stack, browser):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1

    env = stack.env
    client = aiplatform_v1.ModelServiceClient(
        transport="rest", credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=env["VERTEX_API_ENDPOINT"]))
    parent = f"projects/{env['GOOGLE_CLOUD_PROJECT']}/locations/{env['GOOGLE_CLOUD_REGION']}"
    with stack.deliveries(["model-audit-events"]) as deliveries:
        client.upload_model(request=aiplatform_v1.UploadModelRequest(
            parent=parent, model_id=HOSTILE_ID,
            model=aiplatform_v1.Model(display_name=HOSTILE, artifact_uri="gs://registrar-console-test/hostile/1/",
                                      labels={"model_type": "retrieval", "blessed": "true"},
                                      version_aliases=["default"],
                                      container_spec=aiplatform_v1.ModelContainerSpec(
                                          image_uri=serving_image("scann"))),
        )).result(timeout=60)
        eventually(lambda: (stack.get(f"/models/{HOSTILE_ID}") or {}).get("display_name") == HOSTILE, timeout=60,
                   what="the hostile model in the registry")
        deliveries.settle()

    for url, name in ((f"{stack.api}/console/?page_size=200", "hostile-overview"),
                      (f"{stack.api}/console/models/{HOSTILE_ID}", "hostile-model")):
        browser.visit(url, name)  # no dialog, nothing logged (a rendered <img src=x> would log its failed load)
        assert browser.find_all("main img") == [] and browser.find_all("main script") == []
        assert browser.driver.execute_script("return document.querySelectorAll('[onerror]').length") == 0
        shown = (browser.find(f'#models-table tr[data-model-id="{HOSTILE_ID}"] th a').text if "models/" not in url
                 else browser.find("#model-name").text)
        assert shown == HOSTILE
    response = requests.get(f"{stack.api}/console/models/{HOSTILE_ID}", timeout=10)
    assert HOSTILE not in response.text and "&lt;img src=x onerror=alert(1)&gt;" in response.text
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_csp_stops_a_script_the_page_did_not_ship(stack, browser):
    """Were something to slip past escaping, the policy would still refuse to run it: an inline script added to
    the page is blocked, and the browser reports the violation."""
    browser.visit(stack.api + "/console/", "csp")
    ran = browser.driver.execute_script("""
        window.__ran = false;
        var s = document.createElement('script'); s.textContent = 'window.__ran = true;';
        document.body.appendChild(s);
        return window.__ran;""")
    assert ran is False
    errors = browser.console_errors()
    assert any("Content Security Policy" in e["message"] for e in errors), errors


# ---------------------------------------------------------------------------------------------------------------
# Schedules and the calendar


def test_the_calendar_shows_a_weekly_schedules_projected_runs_on_the_right_days(stack, browser, weekly):
    day_of_week = weekly["day_of_week"]
    browser.visit(f"{stack.api}/console/schedules?tz={WEEKLY_ZONE}&weeks_past=2&weeks_future=6", "calendar")
    today_cell = browser.find("#calendar td.today")
    today = date.fromisoformat(today_cell.get_attribute("data-date"))  # the server's today, in the zone asked for
    assert "today" in today_cell.text
    last = today + timedelta(days=6 - today.weekday(), weeks=6)
    expected = [d.isoformat() for d in (today + timedelta(days=n) for n in range(1, (last - today).days + 1))
                if d.weekday() == day_of_week]
    cells = browser.find_all("#calendar td.day")
    assert len(cells) == 7 * (2 + 1 + 6)
    ours = [c.get_attribute("data-date") for c in cells if "console weekly" in (c.get_attribute("title") or "")]
    assert ours == expected and len(expected) >= 6
    for cell in cells:
        if cell.get_attribute("data-date") in expected:
            assert "◷1" in cell.text  # a mark and a number, not only a colour
            assert "scheduled" in cell.get_attribute("class")
    weekday = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")[day_of_week]
    row = browser.find(f'#schedules-table tr[data-schedule-id="{weekly["schedule_id"]}"]')
    assert f"weekly on {weekday} at 09:00 ({WEEKLY_ZONE})" in row.text
    calendar = stack.get("/calendar", tz=WEEKLY_ZONE, weeks_past=2, weeks_future=6)
    assert [d["date"] for d in calendar["days"] if any(s["schedule_id"] == weekly["schedule_id"]
                                                       for s in d["schedules"])] == expected


def test_pause_and_resume_a_schedule_from_the_page(stack, browser, weekly):
    sid = weekly["schedule_id"]
    browser.visit(f"{stack.api}/console/schedules", "schedules")
    for action, status in (("pause", "paused"), ("resume", "active")):
        browser.find(f'tr[data-schedule-id="{sid}"] button[data-action="{action}"]').click()
        browser.wait_for(lambda d: browser.find_all(".confirm"), what="the confirmation step")
        assert stack.get(f"/schedules/{sid}")["status"] != status  # nothing happens before confirming
        browser.screenshot(f"confirm-{action}")
        browser.find(".confirm .confirm-yes").click()
        browser.wait_for(lambda d, s=status: f"is now {s}" in browser.find("#schedule-outcome").text,
                         what=f"{action} done")
        assert browser.find(f'tr[data-schedule-id="{sid}"] .schedule-status').text == status
        assert stack.get(f"/schedules/{sid}")["status"] == status
        history = stack.get(f"/schedules/{sid}/history")["history"]
        assert history[-1]["kind"] == f"schedule.{status if status == 'paused' else 'resumed'}"
        browser.screenshot(f"after-{action}")


# ---------------------------------------------------------------------------------------------------------------
# Deploy from the page, then try the served model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> ServingBundle:
    return build_serving_bundle(tmp_path_factory.mktemp("bundle") / "built", num_candidates=64, dim=8,
                                algorithm="scann", top_k=10)


def register_servable_version(stack, tmp_path: Path, bundle: ServingBundle, run_id: str, version_dir: str,
                              recall: float, finished_at: datetime) -> tuple[str, str]:
    base = tmp_path / run_id
    shutil.copytree(bundle.path / "query_tower", base / "pushed_model" / version_dir)
    shutil.copytree(bundle.path, base / "pushed_model_serving_bundle" / version_dir)
    stack.publish("pipeline-events", pipeline_run_event(
        run_id, "SUCCEEDED", finished_at, model_name=SERVED_MODEL, model_type="retrieval",
        stage="Pusher", artifacts={"pushed_model_uri": f"{base}/pushed_model/{version_dir}/",
                                   "serving_bundle_uri": f"{base}/pushed_model_serving_bundle/{version_dir}/"},
        metrics={"recall_at_100": recall}, blessed=True, retrieval_algorithm="scann"))
    run = eventually(lambda: (r := stack.get(f"/training-runs/{run_id}"))
                     and (r.get("registration") or {}).get("status") == "registered" and r, what="registered")
    model_id, version_id = model_id_for(SERVED_MODEL), run["registration"]["version_id"]
    eventually(lambda: (m := stack.get(f"/models/{model_id}"))
               and any(v["version_id"] == version_id and v["state"] == "live" for v in m["versions"]),
               what="the served model's version in the registry")
    return model_id, version_id


@pytest.fixture(scope="module")
def served(stack, bundle, tmp_path_factory) -> tuple[str, str, str]:
    """The served model with two versions (two runs, one after the other): (model id, older, newer)."""
    tmp_path = tmp_path_factory.mktemp("served")
    now = datetime.now(timezone.utc)
    with stack.deliveries() as deliveries:
        model_id, first = register_servable_version(stack, tmp_path, bundle, "console-served-run", VERSION_DIRS[0],
                                                    0.5, now)
        _, second = register_servable_version(stack, tmp_path, bundle, "console-served-run-2", VERSION_DIRS[1],
                                              0.55, now + timedelta(seconds=5))
        deliveries.settle()
    return model_id, first, second


def deploy_from_the_page(browser, version_id: str) -> None:
    choose(browser, "#deploy-version", version_id)
    choose(browser, "#deploy-preset", "development")
    browser.find("#deploy-button").click()
    browser.wait_for(lambda d: browser.find_all(".confirm"), what="the confirmation step")
    assert "development" in browser.find(".confirm").text


def test_deploy_from_the_page_shows_the_url_and_kpis_agree_then_predict_and_roll_back(stack, browser, served,
                                                                                       bundle):
    model_id, version_id, newer = served
    deployed_before = stack.get("/kpis")["deployed"]
    browser.visit(f"{stack.api}/console/models/{model_id}", "served-model-before")
    assert browser.find_all(".rollback-action") == []  # nothing deployed, nothing to roll back
    deploy_from_the_page(browser, version_id)
    assert stack.get(f"/models/{model_id}/endpoints")["endpoints"] == []  # nothing happens before confirming
    browser.screenshot("confirm-deploy")
    browser.find(".confirm .confirm-yes").click()
    link = browser.wait_for(lambda d: browser.find_all("#deploy-outcome .deployed-url"), timeout=300, every=1.0,
                            what="the deployed URL", allow_network=DEPLOY_STATUS_404)[0]
    browser.screenshot("deployed")
    model = eventually(lambda: (m := stack.get(f"/models/{model_id}"))["deployment"]["status"] == "deployed" and m,
                       timeout=30, what="the API says deployed")
    assert link.text == model["deployment"]["uri"] and link.get_attribute("href").rstrip("/") == link.text.rstrip("/")
    assert model["deployment"]["version_id"] == version_id
    outcome = browser.find("#deploy-outcome").text
    assert outcome.startswith(f"Deployed version {version_id}")
    request_id = outcome.split("(request ", 1)[1].split(")", 1)[0]
    assert stack.get(f"/deployments/{request_id}")["status"] == "deployed"  # recorded like any other request
    eventually(lambda: stack.get("/kpis")["deployed"] == deployed_before + 1, timeout=30, what="/kpis deployed")

    # The page after the deploy: the KPIs on the overview agree, and the served model answers through the registry.
    browser.visit(stack.api + "/console/", "overview-after-deploy")
    assert browser.find('[data-kpi="deployed"]').text == str(stack.get("/kpis")["deployed"])
    browser.visit(f"{stack.api}/console/models/{model_id}", "served-model")
    browser.wait_for(lambda d: "serving signature expects" in browser.find("#signature-note").text,
                     what="the example from the serving signature")
    features = browser.find("#signature-note").text.split(": ", 1)[1].rstrip(".").split(", ")
    assert {f.split(" (")[0] for f in features} == {"customer_id", "city", "segment", "revenue"}
    browser.find("#predict-button").click()
    browser.wait_for(lambda d: browser.find_all("#predictions-table tbody tr"), timeout=60, what="predictions")
    browser.screenshot("predicted")
    shown = browser.texts("#predictions-table tbody th")
    assert shown and set(shown) <= set(bundle.product_ids) and len(shown) <= 10

    # A second deploy (the newer version), then roll the service back from the page: the earlier version serves.
    deploy_from_the_page(browser, newer)
    browser.find(".confirm .confirm-yes").click()
    browser.wait_for(lambda d: f"Deployed version {newer}" in browser.find("#deploy-outcome").text, timeout=300,
                     every=1.0, what="the second deploy", allow_network=DEPLOY_STATUS_404)
    eventually(lambda: stack.get(f"/models/{model_id}")["deployment"]["version_id"] == newer, timeout=30,
               what="the API says the newer version is deployed")
    browser.visit(f"{stack.api}/console/models/{model_id}", "served-model-two-deploys")
    [service] = browser.attrs(".rollback-action", "data-service")
    assert browser.texts(f'tr[data-service-id="{service}"] select.rollback-to option') == [
        f"previous: version {version_id}"]
    browser.find(".rollback-action").click()
    browser.wait_for(lambda d: browser.find_all(".confirm"), what="the rollback confirmation")
    assert f"to previous: version {version_id}" in browser.find(".confirm").text
    assert stack.get(f"/models/{model_id}")["deployment"]["version_id"] == newer  # nothing before confirming
    browser.screenshot("confirm-rollback")
    browser.find(".confirm .confirm-yes").click()
    browser.wait_for(lambda d: "Rolled back" in browser.find("#deploy-outcome").text, timeout=300, every=1.0,
                     what="rolled back", allow_network=DEPLOY_STATUS_404)
    browser.screenshot("rolled-back")
    outcome = browser.find("#deploy-outcome").text
    assert outcome.startswith(f"Rolled back {service} from version {newer} to version {version_id}")
    request_id = outcome.split("(request ", 1)[1].split(")", 1)[0]
    assert stack.get(f"/deployments/{request_id}")["rollback"]["from_version"] == newer
    assert browser.find(f'tr[data-service-id="{service}"] .endpoint-version').text == version_id
    model = eventually(lambda: (m := stack.get(f"/models/{model_id}"))["deployment"]["version_id"] == version_id
                       and m, timeout=30, what="the API says the earlier version is deployed")
    assert model["deployment"]["status"] == "deployed"
    [endpoint] = stack.get(f"/models/{model_id}/endpoints")["endpoints"]
    assert endpoint["serving"]["version_id"] == version_id  # what Cloud Run serves
    eventually(lambda: stack.get("/kpis")["deployed"] == deployed_before + 1, timeout=30, what="/kpis after rollback")
    browser.visit(stack.api + "/console/", "overview-after-rollback")
    assert browser.find('[data-kpi="deployed"]').text == str(stack.get("/kpis")["deployed"])
    browser.visit(f"{stack.api}/console/models/{model_id}", "served-model-rolled-back")
    assert f"deployed version {version_id}" in browser.find("#deployment-status").text

    browser.find("#undeploy-button").click()
    browser.wait_for(lambda d: browser.find_all(".confirm"), what="the undeploy confirmation")
    browser.find(".confirm .confirm-yes").click()
    browser.wait_for(lambda d: "Undeployed" in browser.find("#deploy-outcome").text, timeout=120, every=1.0,
                     what="undeployed", allow_network=DEPLOY_STATUS_404)
    eventually(lambda: stack.get("/kpis")["deployed"] == deployed_before, timeout=30, what="/kpis after undeploy")


# ---------------------------------------------------------------------------------------------------------------
# Releases: promote from the page, decide, compare


def promote_from_the_page(browser, version_id: str, alias: str, reason: str) -> None:
    choose(browser, "#promote-version", version_id)
    type_into(browser, "#promote-alias", alias)
    type_into(browser, "#promote-reason", reason)
    browser.find("#promote-button").click()
    browser.wait_for(lambda d: browser.find_all(".confirm"), what="the promotion's confirmation step")
    assert f"to alias {alias}" in browser.find(".confirm").text
    browser.find(".confirm .confirm-yes").click()


def test_promote_an_alias_from_the_page_and_decide_a_protected_one(stack, browser, served):
    model_id, older, newer = served
    browser.visit(f"{stack.api}/console/models/{model_id}", "served-model-promotions")
    # An alias no policy protects: applied at once (the local principal holds every role), then the registry shows
    # it, through Vertex AI's audit log.
    promote_from_the_page(browser, older, "candidate", "recall@100 0.5, for the A/B test")
    browser.wait_for(lambda d: "registry shows candidate → version" in browser.find("#promotion-outcome").text,
                     timeout=120, every=0.5, what="the alias applied")
    browser.screenshot("promoted")
    assert f"candidate → version {older}" in browser.find("#model-aliases").text
    assert stack.get(f"/models/{model_id}")["aliases"]["candidate"] == older
    [applied] = stack.get("/promotions", model_id=model_id)["promotions"]
    assert applied["status"] == "applied" and applied["requested_by"].startswith("local:")
    row = f'#promotions-table tr[data-promotion-id="{applied["promotion_id"]}"]'
    assert browser.find(f"{row} .promotion-status").text == "applied"

    # A protected alias waits for an approver other than the one who asked: approving one's own request is refused
    # (the API's 403, shown as text); rejecting it, with a reason, decides it.
    promote_from_the_page(browser, newer, "production", "recall@100 +0.05")
    browser.wait_for(lambda d: "is pending" in browser.find("#promotion-outcome").text, what="pending")
    [pending] = stack.get("/promotions", model_id=model_id, status="pending")["promotions"]
    row = f'#promotions-table tr[data-promotion-id="{pending["promotion_id"]}"]'
    browser.find(f'{row} button[data-action="approve"]').click()
    browser.wait_for(lambda d: browser.find_all(".confirm"), what="the approval's confirmation step")
    browser.find(".confirm .confirm-yes").click()
    refused = browser.wait_for(lambda d: "approve refused" in (t := browser.find("#promotion-outcome").text) and t,
                               what="the refusal", allow_network=APPROVE_403)
    assert "an approval must come from a different principal" in refused
    browser.screenshot("approval-refused")
    browser.find(f'{row} button[data-action="reject"]').click()
    browser.wait_for(lambda d: browser.find_all(".confirm .confirm-reason"), what="the rejection's reason field")
    browser.find(".confirm .confirm-reason").send_keys("wait for the A/B test")
    browser.find(".confirm .confirm-yes").click()
    browser.wait_for(lambda d: browser.find(f"{row} .promotion-status").text == "rejected", what="rejected",
                     allow_network=APPROVE_403)  # the refused approval's load failure may be logged late
    decided = stack.get(f"/promotions/{pending['promotion_id']}")
    assert decided["status"] == "rejected" and decided["decision_reason"] == "wait for the A/B test"
    assert browser.find_all(f"{row} button") == []
    assert "production" not in stack.get(f"/models/{model_id}")["aliases"]


def test_compare_two_versions_from_the_model_page(stack, browser, served):
    model_id, older, newer = served
    browser.visit(f"{stack.api}/console/models/{model_id}", "served-model-compare")
    choose(browser, "#compare-a", older)
    choose(browser, "#compare-b", newer)
    browser.find("#compare-button").click()
    browser.wait_ready()
    browser.assert_clean("the compare page")
    browser.screenshot("compare")
    assert browser.driver.current_url == f"{stack.api}/console/models/{model_id}/compare?versions={older}%2C{newer}"
    api = stack.get(f"/models/{model_id}/compare", versions=f"{older},{newer}")
    metric = next(m for m in api["metrics"] if m["name"] == "recall_at_100")
    row = '#compare-metrics tr[data-metric="recall_at_100"]'
    assert browser.find(f"{row} .metric-a").text == "0.5" == f"{metric['a']:.4g}"
    assert browser.find(f"{row} .metric-b").text == "0.55" == f"{metric['b']:.4g}"
    assert browser.find(f"{row} .metric-delta").text == f"{metric['delta']:+.4g}"
    assert metric["better"] == "b" and browser.find(f"{row} .metric-better").text == f"version {newer} ▶"
    assert browser.find(".evaluation-a").text == api["a"]["evaluation"] == "blessed"
    browser.find("#compare-swap").click()
    browser.wait_ready()
    browser.assert_clean("the swapped comparison")
    assert browser.find(f"{row} .metric-better").text == f"◀ version {newer}"


# ---------------------------------------------------------------------------------------------------------------
# Training runs: a finished run's page from the model page, rerun from it; cancel a running run


def shown_epochs(browser) -> list[dict]:
    """The epochs table as the API's `epochs` (the exact values are the cells' data-value)."""
    epochs = []
    for row in browser.find_all("#epochs-table tbody tr[data-epoch]"):
        epoch: dict = {"epoch": int(row.get_attribute("data-epoch"))}
        for cell in row.find_elements("css selector", "td[data-value]"):
            epoch.setdefault(cell.get_attribute("data-split"), {})[cell.get_attribute("data-metric")] = float(
                cell.get_attribute("data-value"))
        epochs.append(epoch)
    return epochs


def test_a_finished_runs_page_from_the_model_page_then_rerun_it_with_more_epochs(stack, browser):
    created = requests.post(f"{stack.api}/schedules", json={
        "name": "console runs", "model_name": "console_runs_model", "schedule_type": "weekly", "day_of_week": 0,
        "schedule_time": "09:00", "training_config": {"model_type": "retrieval", "epochs": 2}}, timeout=60)
    assert created.status_code == 201, created.text
    sid = created.json()["schedule_id"]
    browser.visit(f"{stack.api}/console/schedules", "schedules-before-trigger")
    browser.find(f'tr[data-schedule-id="{sid}"] button[data-action="trigger"]').click()
    browser.wait_for(lambda d: browser.find_all(".confirm"), what="the trigger's confirmation step")
    browser.find(".confirm .confirm-yes").click()
    link = browser.wait_for(lambda d: browser.find_all("#schedule-outcome a.run-link"), what="the triggered run")[0]
    run_id = link.text
    assert link.get_attribute("href") == f"{stack.api}/console/runs/{run_id}"
    model_id = model_id_for("console_runs_model")
    run = eventually(lambda: (r := stack.get(f"/training-runs/{run_id}"))
                     and (r.get("registration") or {}).get("status") == "registered" and r,
                     what="the triggered run succeeded and registered")

    browser.visit(f"{stack.api}/console/models/{model_id}", "runs-model")
    browser.find(f'#lineage-table a.run-link[href="/console/runs/{run_id}"]').click()
    browser.wait_ready()
    browser.assert_clean("the run page")
    browser.screenshot("finished-run")
    assert browser.driver.current_url == f"{stack.api}/console/runs/{run_id}"
    assert browser.find("#run-status").text == run["status"] == "SUCCEEDED"
    assert [e["epoch"] for e in run["epochs"]] == [1, 2] and shown_epochs(browser) == run["epochs"]
    charted = sorted((f.get_attribute("data-metric"), c.get_attribute("data-split"), int(c.get_attribute("data-epoch")),
                      float(c.get_attribute("data-value")))
                     for f in browser.find_all("figure.epoch-chart") for c in f.find_elements("css selector", "circle"))
    assert charted == sorted((name, split, e["epoch"], value) for e in run["epochs"]
                             for split in ("train", "validation") for name, value in (e.get(split) or {}).items())
    assert browser.find_all("#cancel-form") == []  # it ended: nothing to cancel
    assert browser.find("#run-trigger a").get_attribute("href").endswith(f"/console/schedules#schedule-{sid}")

    # Rerun with one more epoch: only what changed is sent; the new run's page says what it reruns.
    field = browser.find("#rerun-epochs")
    assert field.get_attribute("value") == "2"
    field.clear()
    field.send_keys("3")
    browser.find("#rerun-reason").send_keys("one more epoch")
    browser.find("#rerun-button").click()
    browser.wait_for(lambda d: browser.find_all(".confirm"), what="the rerun's confirmation step")
    assert "with epochs=3" in browser.find(".confirm").text
    browser.find(".confirm .confirm-yes").click()
    new_link = browser.wait_for(lambda d: browser.find_all("#run-outcome a.run-link"), what="the new run's link")[0]
    new_id = new_link.text
    new_run = eventually(lambda: (r := stack.get(f"/training-runs/{new_id}")) and r.get("status") == "SUCCEEDED"
                         and r, what="the rerun succeeded")
    assert new_run["training_config"]["epochs"] == 3 and all(  # only epochs was overridden
        new_run["training_config"][key] == value for key, value in run["training_config"].items() if key != "epochs")
    new_link.click()
    browser.wait_ready()
    browser.assert_clean("the rerun's page")
    browser.screenshot("rerun")
    assert browser.driver.current_url == f"{stack.api}/console/runs/{new_id}"
    assert browser.find("#run-rerun-of").text == run_id == new_run["rerun_of"]
    assert browser.find("#run-requested-by").text.startswith(new_run["requested_by"])
    assert shown_epochs(browser) == new_run["epochs"] and len(new_run["epochs"]) == 3
    browser.find("#run-rerun-of a").click()
    browser.wait_ready()
    assert browser.texts("#run-reruns a") == [new_id] == stack.get(f"/training-runs/{run_id}")["reruns"]


def test_cancel_a_running_run_from_its_page(stack, browser):
    run_id = "console-running-run"
    stack.publish("pipeline-events", pipeline_run_event(run_id, "RUNNING", datetime.now(timezone.utc),
                                                        model_name="console_runs_model"))
    eventually(lambda: (stack.get(f"/training-runs/{run_id}") or {}).get("status") == "RUNNING", what="running")
    browser.visit(f"{stack.api}/console/runs/{run_id}", "running-run")
    assert browser.find_all("#rerun-form") == []  # it has not ended: nothing to rerun yet
    browser.find("#cancel-button").click()
    browser.wait_for(lambda d: browser.find_all(".confirm .confirm-reason"), what="the cancel's reason field")
    assert stack.get(f"/training-runs/{run_id}").get("cancel_requested") is None  # nothing before confirming
    browser.find(".confirm .confirm-reason").send_keys("wrong data")
    browser.find(".confirm .confirm-yes").click()
    browser.wait_for(lambda d: "Cancel requested" in browser.find("#run-outcome").text, what="the cancel accepted")
    assert browser.find_all("#cancel-form") == []
    run = eventually(lambda: (r := stack.get(f"/training-runs/{run_id}")) and r.get("cancel_requested") and r,
                     what="the cancel recorded")
    assert run["cancel_requested"]["reason"] == "wrong data" and run["status"] == "RUNNING"
    browser.visit(f"{stack.api}/console/runs/{run_id}", "cancel-requested")
    assert browser.find_all("#cancel-button") == [] and "A cancel was requested" in browser.find("#run-actions-note").text
    assert "wrong data" in browser.find("#run-cancel-requested").text


# ---------------------------------------------------------------------------------------------------------------
# Every page, once more: nothing logged, a screenshot each


def test_no_page_logs_an_error(stack, browser, weekly):
    pages = ["/console/", "/console/?status=idle", f"/console/models/{stack.demo_model_id}",
             f"/console/models/{stack.demo_model_id}/compare?versions=1,2", "/console/schedules",
             "/console/quarantine", "/console/audit", "/console/models/no-such-model"]
    for path in pages:
        browser.driver.get(stack.api + path)
        browser.wait_ready()
        browser.assert_clean(path, allow_network=r"/console/models/no-such-model .*404" if "no-such" in path else None)
        browser.screenshot("page" + path.replace("/", "_"))
    assert len(list(browser.screenshots.glob("*.png"))) == len(pages)
