"""HTTP face of the emulator: the v1 REST subset of CloudScheduler that `scheduler_v1` (REST transport) sends.

    POST   /v1/projects/P/locations/L/jobs                    create (body: Job)
    GET    /v1/projects/P/locations/L/jobs?pageSize&pageToken  list
    GET    /v1/projects/P/locations/L/jobs/ID                 get
    PATCH  /v1/projects/P/locations/L/jobs/ID?updateMask=…    update (body: Job)
    DELETE /v1/projects/P/locations/L/jobs/ID                 delete
    POST   /v1/projects/P/locations/L/jobs/ID:pause|:resume|:run

Emulator-only test hooks, under /emulator/v1/:
    POST projects/P/locations/L/jobs/ID:fire   {"times": 2} → {"messageIds": [...]}: the same delivery, repeated
    GET|POST clock                             {"time": RFC 3339 | null}: read or move the emulator's clock
    GET  firings?job=NAME                      {"firings": [{"job", "trigger": schedule|run|fire, "slot",
                                               "attemptTime", "messageId", "error"}, ...]}: the delivery attempts,
                                               oldest first (the last 1000); `slot` is the cron slot a schedule
                                               firing was due for
    POST dispatcher:sync                       {} → {"synced": true} once a whole pass of the firing thread that
                                               began after the request has run: a job due when the request came
                                               has been fired by then (503 UNAVAILABLE if the thread is stuck)
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from flask import Flask, jsonify, request

from localcloud.emulator import ApiError, create_flask_app, invalid, json_body, parse_rfc3339, rfc3339
from localcloud.scheduler_emulator.firing import Dispatcher, EmulatorClock, MessagePublisher, NoPublisher
from localcloud.scheduler_emulator.jobs import SchedulerState

log = logging.getLogger(__name__)

JOBS_PATH = re.compile(r"^(?P<parent>projects/[^/]+/locations/[^/]+)/jobs$")
JOB_PATH = re.compile(r"^(?P<name>projects/[^/]+/locations/[^/]+/jobs/[^/:]+)(?::(?P<verb>[A-Za-z]+))?$")
MAX_FIRE_TIMES = 100


def create_app(state_path, project: str, location: str, publisher: MessagePublisher | None = None, *,
               clock: EmulatorClock | None = None, start_dispatcher: bool = True) -> Flask:
    clock = clock or EmulatorClock()
    state = SchedulerState(state_path, project, location, clock=clock)
    dispatcher = Dispatcher(state, publisher or NoPublisher())
    if start_dispatcher:
        dispatcher.start()
    app = create_flask_app(__name__, project, location, health=lambda: {"jobs": len(state.jobs)})
    app.extensions["scheduler_emulator"] = state
    app.extensions["scheduler_dispatcher"] = dispatcher

    def changed(job: dict[str, Any]):
        dispatcher.wake()
        return jsonify(job)

    @app.route("/v1/<path:path>", methods=["GET", "POST", "PATCH", "DELETE"])
    def api(path: str):
        method = request.method
        if match := JOBS_PATH.match(path):
            if method == "POST":
                return changed(state.create(match["parent"], json_body()))
            if method == "GET":
                return jsonify(state.list(match["parent"], request.args.get("pageSize"),
                                          request.args.get("pageToken")))
        elif match := JOB_PATH.match(path):
            name, verb = match["name"], match["verb"]
            if verb is None and method == "GET":
                return jsonify(state.get(name))
            if verb is None and method == "PATCH":
                return changed(state.patch(name, request.args.get("updateMask", ""), json_body()))
            if verb is None and method == "DELETE":
                return jsonify(state.delete(name))
            if verb == "pause" and method == "POST":
                return changed(state.pause(name))
            if verb == "resume" and method == "POST":
                return changed(state.resume(name))
            if verb == "run" and method == "POST":
                state.check_name(name)
                return jsonify(dispatcher.run(name))
        raise ApiError("NOT_FOUND", f"{method} /v1/{path} is not part of the emulated API")

    @app.post("/emulator/v1/<path:path>")
    def fire(path: str):
        match = JOB_PATH.match(path)
        if not match or match["verb"] != "fire":
            raise ApiError("NOT_FOUND", f"unknown emulator endpoint /emulator/v1/{path}")
        times = json_body().get("times", 1)
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= MAX_FIRE_TIMES:
            raise invalid(f"times must be an integer between 1 and {MAX_FIRE_TIMES}")
        state.check_name(match["name"])
        return jsonify({"messageIds": dispatcher.fire(match["name"], times)})

    @app.get("/emulator/v1/firings")
    def firings():
        return jsonify({"firings": dispatcher.firings(request.args.get("job") or None)})

    @app.post("/emulator/v1/dispatcher:sync")
    def sync():
        if not dispatcher.sync():
            raise ApiError("UNAVAILABLE", "the firing thread did not complete a pass")
        return jsonify({"synced": True})

    @app.route("/emulator/v1/clock", methods=["GET", "POST"])
    def emulator_clock():
        """Move the clock (slots skipped by the jump are not fired, as if the emulator had been down)."""
        if request.method == "POST":
            body = json_body()
            if "time" not in body:
                raise invalid('body must be {"time": "<RFC 3339>"} or {"time": null}')
            moment: datetime | None = None
            if body["time"] is not None:
                try:
                    moment = parse_rfc3339(str(body["time"]))
                except ValueError:
                    raise invalid(f"time {body['time']!r} is not an RFC 3339 timestamp with an offset") from None
            with state.lock:  # the firing thread sees the old clock and slots, or the new ones: never a mix
                clock.set(moment)
                state.skip_missed_slots(all_jobs=True)
            dispatcher.wake()
        return jsonify({"time": rfc3339(clock())})

    return app
