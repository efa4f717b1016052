"""The console's pages: server-rendered Jinja2 (autoescaped) over the read functions the JSON API answers from.

Every figure on a page comes from the same function the API route calls with the same parameters (the KPIs from
`registry.queries.kpis`, the table from `registry.queries.list_models` and its page tokens, the calendar from
`schedules.calendar`, ...): the console never counts anything itself. Every page is a GET that changes nothing;
the actions on the pages call the API's own routes from `static/console.js`, with the token of `security`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registrar.comparison import queries as comparison
from registrar.console.figures import calendar_weeks, epoch_charts, epoch_columns, metric_charts
from registrar.console.formatting import FILTERS
from registrar.console.links import console_links
from registrar.console.security import csrf_token, set_csrf_cookie
from registrar.deployments import queries as deployments
from registrar.deployments.release_history import rollback_targets
from registrar.deployments.settings import PRESETS
from registrar.kernel.errors import TransientError
from registrar.kernel.http import BadParameter, check_id, choice_param, int_param, known_params
from registrar.kernel.run_config import CONFIG_KEYS
from registrar.messaging import history
from registrar.messaging.consume import count_quarantined, list_quarantined
from registrar.reconcile.report import CATEGORY_LABELS, COUNT_LABELS, latest_report
from registrar.registration.control import cancellable, rerun_base, rerunnable
from registrar.registration.queries import LOG_TAIL_DEFAULT, NO_LOGS, run_logs, training_run
from registrar.registration.upload import model_id_for
from registrar.registry import queries
from registrar.registry.queries import DeploymentStatusUnknown
from registrar.releases import queries as releases
from registrar.releases.policy import APPROVER, OPERATOR
from registrar.schedules.calendar import CALENDAR_PARAMS, calendar, calendar_params
from registrar.schedules.queries import list_schedules

HERE = Path(__file__).resolve().parent
ASSETS_VERSION = "3"  # in the stylesheet's and script's URLs: a new version is fetched, not a cached one
DEFAULT_PAGE_SIZE = 25
HISTORY_ENTRIES = 200
RAW_PREVIEW = 300  # characters of a quarantined payload shown before "…"
MODEL_FILTERS = ("model_type", "status", "q", "sort", "page_size", "page_token")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class PageError(Exception):
    """A request the page cannot answer: shown on the page with its status, like the API's errors."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def together(**reads):
    """Run independent reads (zero-argument callables) at the same time and return their results by name, so a
    page waits for its slowest read rather than their sum. The first failure is raised."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(reads), thread_name_prefix="console-read") as pool:
        futures = {name: pool.submit(read) for name, read in reads.items()}
        return {name: future.result() for name, future in futures.items()}


def compare_pair(versions: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The versions the compare form starts with: the two newest live ones (older first), else the two newest."""
    live = [v["version_id"] for v in versions if v.get("state") == "live"]
    ids = live if len(live) >= 2 else [v["version_id"] for v in versions]
    return (ids[1], ids[0]) if len(ids) >= 2 else None


def rerun_fields(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The keys of the rerun form: those of the config a rerun starts from that a rerun may override, with their
    value and how the page reads an edit back (a config value that is not a scalar is not offered)."""
    fields = []
    for key, value in sorted(rerun_base(run).items()):
        kind = ("boolean" if isinstance(value, bool) else "integer" if isinstance(value, int)
                else "number" if isinstance(value, float) else "string" if isinstance(value, str) else None)
        if key in CONFIG_KEYS and kind is not None:
            fields.append({"key": key, "value": value, "type": kind,
                           "text": ("true" if value else "false") if kind == "boolean" else str(value)})
    return fields


def run_model_id(run: dict[str, Any]) -> str | None:
    """The registry's model of a run: the one it registered into, else the one its model name maps to."""
    registered = [v.get("model_id") for v in run.get("model_versions") or () if v.get("model_id")]
    if registered:
        return registered[0]
    if (run.get("registration") or {}).get("model_id"):
        return run["registration"]["model_id"]
    return model_id_for(run["model_name"]) if run.get("model_name") else None


def make_blueprint(api):
    """The pages under /console/ and their static files. `api` is the API's context: its store, Cloud Run's
    cached answer, its clock and configuration."""
    from flask import Blueprint, make_response, render_template, request

    bp = Blueprint("console", __name__, url_prefix="/console", template_folder=str(HERE / "templates"),
                   static_folder=str(HERE / "static"), static_url_path="/static")
    for name, function in FILTERS.items():
        bp.add_app_template_filter(function, name)

    def allowed() -> dict[str, bool]:
        """The roles whose actions a page offers: those the caller holds (the API would refuse the others)."""
        roles = (OPERATOR, APPROVER)
        return api.access.holds(*roles) if api.access is not None else {role: False for role in roles}

    def page(template: str, status: int = 200, may: dict[str, bool] | None = None, **context: Any):
        token, fresh = csrf_token(request)
        body = render_template(f"console/{template}.html", csrf_token=token, assets_version=ASSETS_VERSION,
                               nav=request.endpoint, may=allowed() if may is None else may, **context)
        response = make_response(body, status)
        response.headers["Content-Type"] = "text/html; charset=utf-8"
        if fresh:
            set_csrf_cookie(response, token, request)
        return response

    @bp.errorhandler(PageError)
    def page_error(exc: PageError):
        return page("error", exc.status, title=f"Error {exc.status}", message=exc.message)

    @bp.errorhandler(BadParameter)
    def bad_parameter(exc: BadParameter):
        return page("error", 400, title="Bad request", message=f"invalid parameter {exc.parameter!r}: {exc.message}",
                    parameter=exc.parameter)

    @bp.errorhandler(comparison.NotFound)
    def not_found(exc: comparison.NotFound):
        return page("error", 404, title="Not found", message=str(exc))

    @bp.errorhandler(DeploymentStatusUnknown)
    def status_unknown(exc: DeploymentStatusUnknown):
        return page("error", 503, title="Deployment status unknown", message=str(exc))

    @bp.get("/")
    def overview():
        known_params(*MODEL_FILTERS)
        model_type = choice_param("model_type", queries.MODEL_TYPES, "", blank_is_default=True) or None
        filters = {"model_type": model_type, "status": choice_param("status", queries.STATUSES, "all", blank_is_default=True),
                   "search": request.args.get("q") or None,
                   "sort": choice_param("sort", queries.SORTS, "latest", blank_is_default=True),
                   "page_size": int_param("page_size", DEFAULT_PAGE_SIZE, 1, queries.MAX_PAGE_SIZE)}
        token = request.args.get("page_token") or None
        store, serving = api.store(), api.snapshot
        read = together(
            kpis=lambda: queries.kpis(store, serving),
            models=lambda: queries.list_models(store, **filters, page_token=token, serving=serving),
            report=lambda: latest_report(store),
            quarantined=lambda: count_quarantined(store))
        shown = {"model_type": model_type or "", "status": filters["status"], "q": filters["search"] or "",
                 "sort": filters["sort"], "page_size": filters["page_size"]}
        return page("overview", title="Overview", kpis=read["kpis"], models=read["models"], report=read["report"],
                    quarantined=read["quarantined"], filters=shown, paged=bool(token),
                    model_types=queries.MODEL_TYPES, statuses=queries.STATUSES, sorts=queries.SORTS)

    @bp.get("/models/<model_id>")
    def model(model_id: str):
        known_params()
        check_id("model_id", model_id)
        store = api.store()
        snapshot = api.serving_now()  # one answer of Cloud Run for the whole page
        serving = (lambda: snapshot) if snapshot is not None else None
        read = together(
            model=lambda: queries.get_model(store, model_id, serving),
            history=lambda: history.model_history(store, model_id, HISTORY_ENTRIES),
            endpoints=lambda: deployments.model_endpoints(store, model_id, snapshot),
            promotions=lambda: releases.promotions(store, api.now(), model_id=model_id))
        found = read["model"]
        if found is None:
            raise PageError(404, f"model {model_id} is not in the registry")
        endpoints = read["endpoints"]
        return page("model", title=found.get("display_name") or model_id, model=found,
                    history=list(reversed(read["history"])), endpoints=endpoints, promotions=read["promotions"],
                    rollbacks={e["service_id"]: rollback_targets(e["releases"]) for e in endpoints["endpoints"]
                               if e["status"] != "deleted"},
                    compare_pair=compare_pair(found["versions"]),
                    charts=metric_charts(found["versions"], found["lineage"]),
                    live_versions=[v for v in found["versions"] if v.get("state") == "live"],
                    deployment=found.get("deployment") or {}, presets=PRESETS,
                    links=console_links(found, api.config()))

    @bp.get("/models/<model_id>/compare")
    def compare(model_id: str):
        known_params("versions")
        check_id("model_id", model_id)
        a, b = comparison.parse_versions(request.args.get("versions"))
        result = comparison.compare_versions(api.store(), model_id, a, b)
        name = result["a"]["display_name"] or model_id
        return page("compare", title=f"{name}: versions {a} and {b}", model_id=model_id, name=name,
                    comparison=result, swapped=f"{b},{a}")

    @bp.get("/runs/<run_id>")
    def run(run_id: str):
        known_params()
        check_id("run_id", run_id)
        store = api.store()
        read = together(run=lambda: training_run(store, run_id),
                        history=lambda: history.run_history(store, run_id, HISTORY_ENTRIES))
        found = read["run"]
        if found is None:
            raise PageError(404, f"training run {run_id} is not in the registry")
        model_id = run_model_id(found)
        registered = model_id is not None and queries.registered_model(store, model_id) is not None
        logs, logs_note = None, None
        if api.services_factory is None:
            logs_note = "no pipeline runner is configured on this API: it cannot say where run logs are"
        else:
            try:
                logs = run_logs(api.services().runner, found, LOG_TAIL_DEFAULT)
            except TransientError as exc:
                logs_note = f"the pipeline runner could not be asked: {exc}"
            if logs is None and logs_note is None:
                logs_note = NO_LOGS
        may = allowed()
        operator = may[OPERATOR]
        epochs = found.get("epochs") or []
        return page("run", title=f"Training run {run_id}", run=found, history=read["history"],
                    model_id=model_id, model_registered=registered, logs=logs, logs_note=logs_note,
                    epochs=epochs, epoch_columns=epoch_columns(epochs), epoch_charts=epoch_charts(epochs),
                    may=may, operator=operator, may_cancel=operator and cancellable(found),
                    may_rerun=operator and rerunnable(found), rerun_fields=rerun_fields(found))

    @bp.get("/schedules")
    def schedules():
        known_params(*CALENDAR_PARAMS)
        store = api.store()
        cal = calendar(store, now=api.now(), **calendar_params())
        return page("schedules", title="Schedules", schedules=list_schedules(store), calendar=cal,
                    weeks=calendar_weeks(cal), weekdays=WEEKDAYS,
                    next_runs={p["schedule_id"]: p["next_run_at"] for p in cal["schedules"]})

    @bp.get("/quarantine")
    def quarantine():
        known_params("limit")
        limit = int_param("limit", 50, 1, 500)
        return page("quarantine", title="Quarantine", messages=list_quarantined(api.store(), limit),
                    limit=limit, preview=RAW_PREVIEW)

    @bp.get("/audit")
    def audit():
        known_params()
        return page("audit", title="Audit", report=latest_report(api.store()), labels=CATEGORY_LABELS,
                    counts=COUNT_LABELS)

    return bp
