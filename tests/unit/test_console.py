"""The operator console over the real API app (Flask test client) on in-memory registries filled through the bus:
what the pages show is what the JSON API answers, untrusted strings stay text, the headers and the forgery guard,
a GET changes nothing, and the answers are those openapi.yaml describes. The browser tests
(tests/e2e/test_console_browser.py) check the same pages in Chromium against the local stack."""

from __future__ import annotations

import copy
import re
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from fakes import FakeVertex, at
from helpers import alias_entry, deliver, envelope, upload_entries
from registrar.config import Config, IdentitySettings
from registrar.console import security
from registrar.console.figures import calendar_weeks, metric_charts
from registrar.console.formatting import number, signed, timing, when
from registrar.console.pages import ASSETS_VERSION
from registrar.deployments.release_history import NothingToRollBack, plan_rollback, release, rollback_targets
from test_compare import Comparisons
from test_contract import _openapi, _openapi_path
from test_deployment import MODEL, Deployments, deploy_payload
from test_rollback import SERVICE
from test_scheduling import START, Env

HOSTILE = '<img src=x onerror=alert(1)><script>alert("x")</script>'
ESCAPED = "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
PAGES = ["/console/", "/console/?model_type=retrieval&sort=name", "/console/?status=deployed", "/console/?q=recs",
         "/console/?model_type=&status=&q=&sort=&page_size=25", f"/console/models/{MODEL}", "/console/models/hostile",
         "/console/models/ghost", "/console/models/bad.id", "/console/schedules",
         "/console/schedules?tz=Europe/Warsaw&weeks_past=2&weeks_future=4", "/console/quarantine",
         "/console/quarantine?limit=0", "/console/audit", "/console/audit?verbose=1", "/console/?sort=random",
         "/console/?page_size=0", "/console/?page_token=garbage", "/console/schedules?tz=Mars/Olympus"]
STATIC = Path(__file__).resolve().parents[2] / "functions" / "registrar" / "console" / "static"


class World(Deployments):
    """The deployments world (a blessed retrieval model deployed on fake Cloud Run), a model with a hostile
    display name, and two quarantined messages (an alias the schema refuses, a payload that is not JSON)."""

    def __init__(self):
        super().__init__()
        self.deliver(deploy_payload())
        for entry in upload_entries(self.registry, "hostile", "1", at(4), display_name=HOSTILE,
                                    labels={"model_type": "ranking", "metric_rmse": "0_9"}):
            self.audit(entry)
        self.audit(alias_entry("hostile", "1", ["<b>prod</b>"], at(5)))
        self.audit(envelope(None, "bad-1", raw=b"<script>alert(1)</script> not json"))

    def audit(self, entry):
        env = entry if "message" in entry else envelope(entry)
        return deliver(self.services, "on_model_audit_event", env)


@pytest.fixture(scope="module")
def world() -> World:
    return World()


@pytest.fixture
def client(world):
    return world.api()


def page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, response.get_data(as_text=True)[:2000]
    assert response.mimetype == "text/html"
    return response.get_data(as_text=True)


def model_rows(html: str) -> list[str]:
    return re.findall(r'<tr data-model-id="([^"]+)"', html)


# ---------------------------------------------------------------------------------------------------------------
# What the pages show is what the API answers


def test_root_redirects_to_the_console(client):
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"] == "/console/"


def test_overview_shows_the_kpis_and_models_of_the_api(client):
    html = page(client, "/console/")
    kpis = client.get("/kpis").get_json()
    assert kpis["deployed"] == 1
    for key in ("total", "blessed", "deployed", "idle"):
        assert re.search(rf'data-kpi="{key}">{kpis[key]}<', html), key
    models = client.get("/models?page_size=25").get_json()
    assert model_rows(html) == [m["model_id"] for m in models["models"]] and len(models["models"]) == 2
    assert f'{models["total_size"]} models match' in html
    quarantined = len(client.get("/quarantine?limit=500").get_json()["messages"])
    assert quarantined == 2 and f'data-count="quarantine">{quarantined}<' in html
    assert "none has run yet" in html


@pytest.mark.parametrize("query", ["model_type=ranking", "model_type=retrieval", "status=blessed&sort=best_metric",
                                   "q=RECS", "q=hostile", "sort=oldest", "status=deleted", "status=deployed",
                                   "status=idle", "status=not_blessed&sort=name"])
def test_overview_filters_are_the_apis(client, query):
    html = page(client, f"/console/?{query}")
    expected = client.get(f"/models?{query}&page_size=25").get_json()
    assert model_rows(html) == [m["model_id"] for m in expected["models"]]


@pytest.mark.parametrize("query", ["model_type=RANKING", "sort=Name", "status=ALL"])
def test_overview_refuses_what_the_api_refuses(client, query):
    parameter = query.split("=")[0]
    assert client.get(f"/models?{query}").get_json()["error"]["parameter"] == parameter
    assert f'data-parameter="{parameter}"' in page(client, f"/console/?{query}", 400)


def test_the_forms_empty_fields_mean_what_leaving_them_out_means(client):
    assert model_rows(page(client, "/console/?model_type=&status=&q=&sort=&page_size=25")) == model_rows(
        page(client, "/console/"))


def test_overview_pages_with_the_apis_tokens(client):
    html = page(client, "/console/?sort=name&page_size=1")
    token = unescape(re.search(r'id="next-page" rel="next" href="[^"]*page_token=([^&"]+)', html).group(1))
    api = client.get("/models?sort=name&page_size=1").get_json()
    assert token == api["next_page_token"]
    second = page(client, f"/console/?sort=name&page_size=1&page_token={token}")
    expected = client.get(f"/models?sort=name&page_size=1&page_token={token}").get_json()["models"]
    assert model_rows(second) == [m["model_id"] for m in expected] != model_rows(html)
    assert 'id="first-page"' in second and 'id="next-page"' not in second
    assert "belongs to a different query" in page(client, f"/console/?sort=oldest&page_size=1&page_token={token}",
                                                  400)


def test_unknown_deployment_status_is_shown_as_unknown(world):
    world.serving.down = True
    try:
        app = world.api()
        html = page(app, "/console/")
        assert 'data-kpi="deployed">unknown<' in html and 'data-kpi="idle">unknown<' in html
        assert "Cloud Run could not be asked" in html
        assert "Cloud Run could not be reached" in page(app, "/console/?status=deployed", 503)
        model = page(app, f"/console/models/{MODEL}")
        assert "<span class=\"badge\">unknown</span>" in model and "(Cloud Run: unknown)" in model
    finally:
        world.serving.down = False


def test_model_page_shows_versions_deployment_lineage_and_history(client):
    html = page(client, f"/console/models/{MODEL}")
    model = client.get(f"/models/{MODEL}").get_json()
    assert model["deployment"]["status"] == "deployed"
    assert f'href="{model["deployment"]["uri"]}"' in html
    assert re.findall(r'<tr data-version-id="([^"]+)"', html) == [v["version_id"] for v in model["versions"]]
    assert model["lineage"][0]["training_run"]["training_run_id"] == "run-1" and "run-1" in html
    lineage = re.search(r'<table id="lineage-table">(.*?)</table>', html, re.S).group(1)
    assert re.findall(r'<a class="run-link" href="/console/runs/([a-z0-9-]+)">', lineage) == [
        link["training_run"]["training_run_id"] for link in model["lineage"]]
    versions = re.search(r'<table id="versions-table">(.*?)</table>', html, re.S).group(1)
    assert re.findall(r'<a class="run-link" href="/console/runs/([a-z0-9-]+)">', versions) == [
        v["training_run_id"] for v in model["versions"] if v.get("training_run_id")]
    history = client.get(f"/models/{MODEL}/history").get_json()["history"]
    assert re.findall(r'<th scope="row">([a-z_.]+)</th><td>', html) == [e["kind"] for e in reversed(history)]
    assert "ops@example.com" in html  # who asked for the deploy
    endpoints = client.get(f"/models/{MODEL}/endpoints").get_json()
    assert [e["service_id"] for e in endpoints["endpoints"]] == re.findall(
        r'<tr data-service-id="[a-z0-9-]+"><th scope="row"><code>([a-z0-9-]+)</code></th>', html) and "(Cloud Run: known)" in html
    assert 'id="deploy-form"' in html and 'id="predict-form"' in html and 'data-version-id="1"' in html


def test_links_to_the_google_cloud_console_only_against_google(world):
    saved = world.services.config
    try:
        local = IdentitySettings(mode="local", local_user="developer")
        world.services.config = Config(project="demo-registrar", identity=local)
        html = page(world.api(), f"/console/models/{MODEL}")
        assert ("https://console.cloud.google.com/vertex-ai/models/locations/us-central1/models/recs-retrieval"
                "?project=demo-registrar") in html
        assert "https://console.cloud.google.com/run/detail/us-central1/recs-retrieval-serving/metrics" in html
        world.services.config = Config(project="demo-registrar", cloud_run_endpoint="http://127.0.0.1:1", identity=local)
        assert "console.cloud.google.com" not in page(world.api(), f"/console/models/{MODEL}")
    finally:
        world.services.config = saved


def test_errors_are_pages_with_the_status(client):
    assert "model ghost is not in the registry" in page(client, "/console/models/ghost", 404)
    assert "invalid parameter &#39;model_id&#39;" in page(client, "/console/models/bad.id", 400)
    assert 'role="alert" data-parameter="sort">invalid parameter &#39;sort&#39;' in page(client, "/console/?sort=random",
                                                                                        400)
    assert "invalid parameter &#39;tz&#39;" in page(client, "/console/schedules?tz=Mars/Olympus", 400)
    assert "invalid parameter &#39;bogus&#39;" in page(client, "/console/quarantine?bogus=1", 400)
    assert "invalid parameter &#39;limit&#39;" in page(client, "/console/quarantine?limit=1&limit=2", 400)


def test_quarantine_and_audit_pages(client, world):
    html = page(client, "/console/quarantine")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; not json" in html and "<script>alert(1)" not in html
    assert len(re.findall(r"<pre class=\"raw\">", html)) == 2
    assert "No audit has run yet" in page(client, "/console/audit")
    world.store.set("audits/latest", {
        "report_id": "r1", "generated_at": "2026-11-02T10:00:00+00:00", "is_clean": False, "repairs": None,
        "duration_seconds": 0.5, "counts": {"orphan": 1, "vertex_models": 2},
        "discrepancies": [{"category": "orphan", "model_id": "hostile", "version_id": "1", "display_name": HOSTILE,
                           "detail": "NOT_FOUND in Vertex AI", "data": {}}]})
    try:
        html = page(client, "/console/audit")
        assert "in registry, NOT_FOUND in Vertex" in html and "1 discrepancy" in html
        assert HOSTILE not in html and ESCAPED in html
        assert "1 drift</span>" in page(client, "/console/")
    finally:
        world.store.delete("audits/latest")


# ---------------------------------------------------------------------------------------------------------------
# Schedules and the calendar


@pytest.fixture
def scheduled() -> Env:
    env = Env()
    env.created(name="<b>weekly</b> recs", model_name="recs", schedule_type="weekly", day_of_week=2,
                schedule_time="09:00", timezone="Europe/Warsaw")
    paused = env.created(name="paused ranking", model_name="ranking", schedule_type="daily", schedule_time="06:30")
    assert env.client.post(f"/schedules/{paused['schedule_id']}:pause").status_code == 200
    return env


def test_the_schedules_page_lists_what_the_api_lists(scheduled):
    html = page(scheduled.client, "/console/schedules")
    listed = scheduled.client.get("/schedules").get_json()["schedules"]
    assert re.findall(r'<tr data-schedule-id="([^"]+)"', html) == [s["schedule_id"] for s in listed]
    assert "&lt;b&gt;weekly&lt;/b&gt; recs" in html and "<b>weekly</b>" not in html
    assert "weekly on Wednesday at 09:00 (Europe/Warsaw)" in html and "daily at 06:30 (UTC)" in html
    weekly = next(s for s in listed if s["schedule_type"] == "weekly")
    assert f'<time datetime="{weekly["next_run_at"]}">2026-11-04 09:00 CET</time>' in html  # in its own zone
    assert html.count('data-action="resume"') == 1 and html.count('data-action="pause"') == 1


def test_the_calendar_grid_is_the_apis_calendar_in_words(scheduled):
    query = "tz=Europe/Warsaw&weeks_past=1&weeks_future=2"
    html = page(scheduled.client, f"/console/schedules?{query}")
    cal = scheduled.client.get(f"/calendar?{query}").get_json()
    cells = re.findall(r'<td class="day[^"]*" data-date="([^"]+)" data-scheduled="(\d+)"', html)
    assert cells == [(d["date"], str(d["scheduled"])) for d in cal["days"]] and len(cells) == 7 * 4
    assert [date for date, n in cells if n != "0"] == ["2026-11-04", "2026-11-11", "2026-11-18"]
    assert "◷1" in html and "<strong>today</strong>" in html
    assert f"{cal['totals']['scheduled']} projected runs" in html


def test_the_calendar_marks_past_runs_with_symbols_and_words():
    days = []
    for i in range(14):
        days.append({"date": f"2026-11-{2 + i:02d}", "weekday": i % 7, "runs": {"completed": 0, "failed": 0, "other": 0},
                     "scheduled": 0, "schedules": []})
    days[1]["runs"] = {"completed": 2, "failed": 1, "other": 0}
    days[9]["scheduled"] = 1
    days[9]["schedules"] = [{"schedule_id": "sch-1", "name": "<b>weekly</b>", "model_name": "m", "runs": 1}]
    weeks = calendar_weeks({"today": "2026-11-05", "days": days})
    assert [w["start"] for w in weeks] == ["2026-11-02", "2026-11-09"] and all(len(w["days"]) == 7 for w in weeks)
    assert weeks[0]["days"][1]["summary"] == "2 completed, 1 failed" and weeks[0]["days"][1]["past"]
    assert weeks[0]["days"][1]["kinds"] == ["completed", "failed"]
    assert weeks[0]["days"][3]["is_today"] and not weeks[0]["days"][4]["past"]
    assert weeks[1]["days"][2]["kinds"] == ["scheduled"] and "<b>weekly</b> (m): 1 run" in weeks[1]["days"][2]["title"]


def test_times_are_written_in_the_zone_asked_for():
    assert when("2026-11-04T08:00:00+00:00") == "2026-11-04 08:00 UTC"
    assert when("2026-11-04T08:00:00+00:00", "Europe/Warsaw") == "2026-11-04 09:00 CET"
    assert when(None) == "—"
    assert timing({"schedule_type": "hourly", "minute": 15, "timezone": "UTC"}) == "hourly at :15 (UTC)"
    assert timing({"schedule_type": "once", "scheduled_datetime": START + timedelta(hours=3),
                   "timezone": "America/New_York"}) == "once at 2026-11-02 06:00 EST"


# ---------------------------------------------------------------------------------------------------------------
# Safety


@pytest.mark.parametrize("url", ["/console/", "/console/models/hostile", "/console/quarantine", "/console/?q=img"])
def test_untrusted_strings_are_escaped(client, url):
    html = page(client, url)
    assert HOSTILE not in html and "<b>prod</b>" not in html and "<script>alert" not in html
    if "quarantine" not in url:
        assert ESCAPED in html
    assert re.findall(r"<script\b[^>]*>", html) == [f'<script src="/console/static/console.js?v={ASSETS_VERSION}" defer>']
    assert not re.search(r"<[a-z]+[^>]*\son[a-z]+=", html)  # no inline event handler anywhere


def test_security_headers_on_pages_and_json(client):
    response = client.get("/console/")
    csp = response.headers["Content-Security-Policy"]
    assert csp == security.PAGE_CSP
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    api = client.get("/kpis")
    assert api.headers["Content-Security-Policy"] == security.API_CSP
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    error = client.get("/nowhere")
    assert error.status_code == 404 and error.headers["Content-Security-Policy"] == security.API_CSP
    script = client.get("/console/static/console.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    source = script.get_data(as_text=True)
    assert "innerHTML" not in source and "eval(" not in source and "document.write" not in source


def test_the_page_hands_its_token_in_a_strict_cookie(client):
    response = client.get("/console/")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{security.CSRF_COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie
    token = cookie.split("=", 1)[1].split(";", 1)[0]
    assert f'<meta name="csrf-token" content="{token}">' in response.get_data(as_text=True)
    again = client.get("/console/schedules")
    assert "Set-Cookie" not in again.headers  # the same token while the cookie lives
    assert f'content="{token}"' in again.get_data(as_text=True)


def test_the_cookie_is_secure_behind_https(world):
    response = world.api().get("/console/", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["Set-Cookie"]


def deploy(client, **headers):
    return client.post(f"/models/{MODEL}/versions/1:deploy", json={"preset": "development"}, headers=headers)


def test_writes_from_a_browser_need_the_same_origin_and_the_token(world):
    client = world.api()
    token = re.search(r'name="csrf-token" content="([^"]+)"', page(client, "/console/")).group(1)
    published = len(world.publisher.published)
    refused = [
        deploy(client, Origin="https://evil.example"),
        deploy(client, **{"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": token}),
        deploy(client, **{"Sec-Fetch-Site": "same-site", "X-CSRF-Token": token}),
        deploy(client, Origin="null", **{"X-CSRF-Token": token}),
        deploy(client, **{"Sec-Fetch-Site": "same-origin"}),
        deploy(client, **{"Sec-Fetch-Site": "same-origin", "X-CSRF-Token": "x" * 43}),
        deploy(client, Origin="http://localhost", **{"X-CSRF-Token": token + "x"}),
        client.post("/schedules/sch-00000000000000000000:pause", headers={"Origin": "https://evil.example"}),
        client.post(f"/models/{MODEL}:predict", json={"instances": [{"customer_id": "C"}]},
                    headers={"Sec-Fetch-Site": "cross-site"}),
    ]
    for response in refused:
        assert response.status_code == 403, response.get_json()
        assert response.get_json()["error"]["code"] == 403 and response.get_json()["error"]["message"]
    assert len(world.publisher.published) == published  # nothing was published
    assert deploy(client, **{"Sec-Fetch-Site": "same-origin", "X-CSRF-Token": token}).status_code == 202
    assert deploy(client, Origin="http://localhost", **{"X-CSRF-Token": token}).status_code == 202
    assert deploy(client).status_code == 202  # the CLI and other programs send neither header


def test_a_get_to_any_console_url_changes_nothing(world):
    client = world.api()
    before = copy.deepcopy(world.store.docs)
    published = list(world.publisher.published)
    applies = len(world.serving.applies)
    for url in PAGES + ["/", "/console/static/console.js", "/console/static/console.css", "/console/static/x"]:
        assert client.get(url).status_code in (200, 302, 400, 404, 503)
    assert world.store.docs == before
    assert world.publisher.published == published
    assert len(world.serving.applies) == applies and world.serving.deletes == []


# ---------------------------------------------------------------------------------------------------------------
# The description


def _described(method: str, url: str, app) -> dict:
    rule, _ = app.url_map.bind("localhost").match(url.split("?")[0], method=method, return_rule=True)
    return _openapi()["paths"][_openapi_path(rule.rule)][method.lower()]["responses"]


@pytest.mark.parametrize("url", PAGES + ["/"])
def test_every_page_answers_as_openapi_describes(client, url):
    response = client.get(url)
    described = _described("GET", url, client.application)
    assert str(response.status_code) in described, (url, response.status_code)
    content = described[str(response.status_code)].get("content", {})
    assert response.mimetype in content


@pytest.mark.parametrize(("query", "accepted"), [
    ("", True), ("model_type=", True), ("model_type=ranking", True), ("model_type=regression", False),
    ("status=", True), ("status=idle", True), ("status=gone", False), ("sort=", True), ("sort=best_metric", True),
    ("sort=random", False), ("q=", True), ("q=%3Cb%3E", True), ("page_size=200", True), ("page_size=201", False),
    ("page_size=", False), ("page_size=1&page_size=2", False), ("page_token=", True), ("page_token=a%2Fb", False),
    ("verbose=1", False),
])
def test_overview_queries_are_taken_or_refused_as_described(client, query, accepted):
    response = client.get(f"/console/?{query}")
    assert (response.status_code == 200) == accepted, response.get_data(as_text=True)[:500]
    if not accepted:
        assert response.status_code == 400 and "invalid parameter" in response.get_data(as_text=True)


def test_the_static_files_are_the_described_ones(client):
    spec = _openapi()["paths"]["/console/static/{filename}"]
    described = set(spec["parameters"][0]["schema"]["enum"])
    assert {p.name for p in STATIC.iterdir()} == described
    content = spec["get"]["responses"]["200"]["content"]
    for name in described:
        response = client.get(f"/console/static/{name}")
        assert response.status_code == 200 and response.mimetype in content, name
    missing = client.get("/console/static/nothing.js")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == 404


def test_other_methods_on_pages_are_the_apis_405(client):
    response = client.post("/console/")
    assert response.status_code == 405 and response.get_json()["error"]["code"] == 405
    assert {m.strip() for m in response.headers["Allow"].split(",")} == {"GET", "HEAD"}


# ---------------------------------------------------------------------------------------------------------------
# What the pages draw


def test_metric_charts_draw_every_version_with_its_value():
    versions = [{"version_id": "10", "state": "live", "metrics": {"recall_at_100": 0.5, "loss": 2.0}},
                {"version_id": "9", "state": "deleted", "metrics": {"recall_at_100": 0.25, "flag": True}},
                {"version_id": "11", "state": "live", "metrics": {}}]
    charts = {c["name"]: c for c in metric_charts(versions)}
    assert list(charts) == ["loss", "recall_at_100"]
    bars = charts["recall_at_100"]["bars"]
    assert [(b["version"], b["label"], b["deleted"]) for b in bars] == [("9", "0.25", True), ("10", "0.5", False)]
    assert bars[1]["height"] == 2 * bars[0]["height"]


# ---------------------------------------------------------------------------------------------------------------
# Finding it


def test_registrar_console_prints_the_url():
    from click.testing import CliRunner
    from registrar_cli.main import cli

    result = CliRunner().invoke(cli, ["console", "--api", "http://127.0.0.1:8123/"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "http://127.0.0.1:8123/console/"


def test_the_demo_prints_the_console_url(capsys):
    from localcloud.demo import print_console_url

    print_console_url("http://127.0.0.1:8123")
    assert "Operator console: http://127.0.0.1:8123/console/" in capsys.readouterr().out


def test_a_deleted_versions_metrics_come_from_its_training_run():
    versions = [{"version_id": "2", "state": "live", "metrics": {}},
                {"version_id": "1", "state": "deleted", "metrics": {}, "training_run_id": "run-1"}]
    lineage = [{"version_id": "1", "training_run": {"training_run_id": "run-1", "metrics": {"recall_at_100": 0.41}}}]
    charts = metric_charts(versions, lineage)
    assert [(c["name"], [(b["version"], b["label"], b["deleted"]) for b in c["bars"]]) for c in charts] == [
        ("recall_at_100", [("1", "0.41", True)])]
    assert metric_charts(versions) == []


# ---------------------------------------------------------------------------------------------------------------
# Releases: promotions, rollbacks and comparisons


class Released(Comparisons):
    """The comparisons' world (versions 1 and 2 deployed, rolled back to 1) with Vertex AI moving aliases; version
    2 deployed again, so the service has an earlier release to go back to; hostile strings in a training config and
    a metric's name; and three promotions asked through the API: an unprotected alias applied, a protected one
    pending, and a protected one refused (version 2 is not blessed)."""

    def __init__(self):
        super().__init__(registry=FakeVertex())
        self.set_run("run-1", metrics={"recall_at_100": 0.41, "loss": 1.9, HOSTILE: 1.0},
                     config={"model_type": "retrieval", "epochs": 5, "embedding_dim": 64, "note": HOSTILE})
        self.deliver(deploy_payload("req-deploy-3", version_id="2", minute=75, allow_unblessed=True,
                                    reason="again"))
        client = self.api()
        self.answers = [client.post(f"/models/{MODEL}/versions/{version}:promote", json={"alias": alias,
                                                                                         "reason": reason})
                        for version, alias, reason in (("1", "candidate", HOSTILE), ("1", "production", "ship it"),
                                                       ("2", "production", "no"))]


@pytest.fixture(scope="module")
def released() -> Released:
    return Released()


def cells(row_html: str) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<t[hd]\b[^>]*>(.*?)</t[hd]>", row_html, re.S)]


def rows(html: str, table: str, attribute: str) -> dict[str, str]:
    body = re.search(rf'<table id="{table}">(.*?)</table>', html, re.S).group(1)
    return {unescape(k): v for k, v in re.findall(rf'<tr {attribute}="([^"]+)"[^>]*>(.*?)</tr>', body, re.S)}


def test_the_promotions_shown_are_the_apis(released):
    client = released.api()
    assert [a.status_code for a in released.answers] == [201, 202, 409]
    html = page(client, f"/console/models/{MODEL}")
    listed = client.get(f"/promotions?model_id={MODEL}").get_json()["promotions"]
    shown = rows(html, "promotions-table", "data-promotion-id")
    assert list(shown) == [p["promotion_id"] for p in listed] and len(listed) == 3
    for promotion in listed:
        row = cells(shown[promotion["promotion_id"]])
        assert row[1].split()[0] == promotion["alias"] and row[2] == promotion["version_id"]
        assert row[3] == promotion["status"] and row[4] == promotion["requested_by"] == "local:developer"
        assert ('data-action="approve"' in shown[promotion["promotion_id"]]) == (promotion["status"] == "pending")
    by_status = {p["status"]: p for p in listed}
    assert set(by_status) == {"applied", "pending", "refused"}
    refused = cells(shown[by_status["refused"]["promotion_id"]])[8]
    assert "✗ blessed: version 2 evaluation: not_blessed" in refused
    assert html.count('class="promotion-action"') == 2 and 'id="promote-form"' in html


def test_the_rollback_action_offers_what_a_rollback_goes_back_to(released):
    client = released.api()
    html = page(client, f"/console/models/{MODEL}")
    [endpoint] = client.get(f"/models/{MODEL}/endpoints").get_json()["endpoints"]
    row = rows(html, "endpoints-table", "data-service-id")[SERVICE]
    assert endpoint["version_id"] == "2" and 'class="rollback-action"' in row and 'data-version-id="2"' in row
    options = re.findall(r'<option value="([^"]*)">([^<]*)</option>', row)
    assert options == [("", "previous: version 1")]
    assert plan_rollback(endpoint["releases"]).target["version_id"] == "1"


def _releases(*versions: str, rolled_back: tuple[int, ...] = ()) -> list[dict]:
    entries = [release(release_id=f"d{n}", version_id=v, revision=f"r{n}", settings={}, image="img",
                       deployed_at=at(n), deployed_by="ops") for n, v in enumerate(versions)]
    for n in rolled_back:
        entries[n]["rolled_back_at"] = at(99)
    return entries


@pytest.mark.parametrize("releases", [
    _releases(), _releases("1"), _releases("1", "1"), _releases("1", "2"), _releases("1", "2", "3"),
    _releases("1", "2", "1", "3", "3"), _releases("1", "2", "3", rolled_back=(1,)),
    _releases("1", "2", "3", rolled_back=(2,)), _releases("2", "1", "2", "3", "1"),
])
def test_the_rollback_targets_are_the_versions_a_rollback_accepts(releases):
    targets = rollback_targets(releases)
    if not targets:
        with pytest.raises(NothingToRollBack):
            plan_rollback(releases)
        return
    assert targets[0] == plan_rollback(releases).target["version_id"]
    for version in {r["version_id"] for r in releases} | {"9"}:
        if version in targets:
            assert plan_rollback(releases, version).target["version_id"] == version
        else:
            with pytest.raises(NothingToRollBack):
                plan_rollback(releases, version)


def test_the_compare_page_shows_the_apis_comparison(released):
    client = released.api()
    html = page(client, f"/console/models/{MODEL}/compare?versions=1,2")
    api = client.get(f"/models/{MODEL}/compare?versions=1,2").get_json()
    shown = rows(html, "compare-metrics", "data-metric")
    assert list(shown) == [m["name"] for m in api["metrics"]] and HOSTILE in shown
    for metric in api["metrics"]:
        row = cells(shown[metric["name"]])
        assert row[2:5] == [number(metric["a"]), number(metric["b"]), signed(metric["delta"])], metric
        assert f'data-better="{metric["better"] or ""}"' in shown[metric["name"]]
    recall = cells(shown["recall_at_100"])
    assert recall[4] == "+0.04" and recall[6] == "version 2 ▶" and cells(shown["loss"])[6] == "◀ version 1"
    verdicts = api["verdicts"]
    assert (f"version 1 is better at {verdicts['a']}, version 2 at {verdicts['b']}; {verdicts['equal']} equal, "
            f"{verdicts['unknown']} without a verdict") in unescape(html)
    assert api["a"]["evaluation"] in html and 'class="evaluation-b">not_blessed<' in html
    config = rows(html, "compare-config", "data-key")
    assert list(config) == [d["key"] for d in api["training_config"]["differences"]] and "note" in config
    assert cells(config["learning_rate"])[1:] == ["(not set)", "0.05"]
    assert cells(config["note"])[1:] == [HOSTILE, "(not set)"]
    assert "req-deploy-1" not in html and html.count('<span class="badge ok">serving</span>') == 1
    assert api["b"]["lineage"]["training_run"]["pipeline_job_name"] in html
    swapped = page(client, f"/console/models/{MODEL}/compare?versions=2,1")
    assert 'id="compare-swap" href="/console/models/recs-retrieval/compare?versions=2,1"' in html and "version 2 and version 1" in swapped


@pytest.mark.parametrize("url", [f"/console/models/{MODEL}", f"/console/models/{MODEL}/compare?versions=1,2"])
def test_hostile_strings_in_releases_and_comparisons_stay_text(released, url):
    html = page(released.api(), url)
    assert HOSTILE not in html and ESCAPED in html
    assert re.findall(r"<script\b[^>]*>", html) == [f'<script src="/console/static/console.js?v={ASSETS_VERSION}" defer>']
    assert parsed(html)["handlers"] == [] and parsed(html)["tags"] & {"img", "b", "i"} == set()


def parsed(html: str) -> dict:
    """What a browser's parser finds: the tags, and any attribute that is an event handler."""
    from html.parser import HTMLParser

    found: dict = {"tags": set(), "handlers": []}

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found["tags"].add(tag)
            found["handlers"] += [(tag, name) for name, _ in attrs if name.startswith("on")]

    Parser().feed(html)
    return found


@pytest.mark.parametrize(("query", "status", "message"), [
    ("versions=1,1", 400, "names version 1 twice"),
    ("versions=1", 400, "must be two version ids"),
    ("versions=1,2,3", 400, "must be two version ids"),
    ("", 400, "is required"),
    ("versions=1,2&versions=2,1", 400, "versions"),
    ("versions=1,2&x=1", 400, "invalid parameter &#39;x&#39;"),
    ("versions=1,9", 404, "version &#39;9&#39; of model &#39;recs-retrieval&#39; is not in the registry"),
])
def test_a_bad_compare_parameter_is_the_error_page_with_the_status(released, query, status, message):
    html = page(released.api(), f"/console/models/{MODEL}/compare?{query}", status)
    assert message in html
    if status == 400:
        assert 'role="alert" data-parameter="' in html
    assert page(released.api(), "/console/models/ghost/compare?versions=1,2", 404).count(
        "model &#39;ghost&#39; is not in the registry") == 1


def test_a_get_of_the_release_pages_changes_nothing(released):
    client = released.api()
    before = copy.deepcopy(released.store.docs)
    published, merges = list(released.publisher.published), list(released.registry.merges)
    applies = len(released.serving.applies)
    for url in (f"/console/models/{MODEL}", f"/console/models/{MODEL}/compare?versions=1,2",
                f"/console/models/{MODEL}/compare?versions=2,3", f"/console/models/{MODEL}/compare?versions=1,1"):
        assert client.get(url).status_code in (200, 400)
    assert released.store.docs == before
    assert released.publisher.published == published and released.registry.merges == merges
    assert len(released.serving.applies) == applies


@pytest.mark.parametrize("url", [f"/console/models/{MODEL}/compare?versions=1,2", f"/console/models/{MODEL}/compare",
                                 f"/console/models/{MODEL}/compare?versions=1,9",
                                 "/console/models/ghost/compare?versions=1,2"])
def test_the_compare_page_answers_as_openapi_describes(released, url):
    client = released.api()
    response = client.get(url)
    described = _described("GET", url, client.application)
    assert str(response.status_code) in described and response.mimetype in described[str(response.status_code)]["content"]
