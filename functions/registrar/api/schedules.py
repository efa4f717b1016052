"""Routes of retraining schedules and the training calendar.

Writes go through the message bus (one transaction: schedule, name claim, ledger, history, outbox); the Cloud
Scheduler job is applied after the commit and its outcome kept on the document (`scheduler_job`). If Cloud
Scheduler fails, the answer is 503 (transient) or 502 with the reason, the schedule shows `scheduler_job.status =
"error"`, and repeating the request (same `request_id` for a create) applies the job again.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import jsonify, request

from registrar.api.access import caller, known_fields
from registrar.api.context import Api
from registrar.kernel.errors import TransientError
from registrar.kernel.http import (
    BadParameter,
    check_id,
    choice_param,
    decode_page_token,
    encode_page_token,
    error,
    int_param,
    json_body,
    jsonable,
    known_params,
    query_fingerprint,
    without_nulls,
)
from registrar.kernel.paths import schedule_path
from registrar.kernel.store import without_internal
from registrar.messaging import history
from registrar.schedules import commands as schedule_commands
from registrar.schedules import jobs, validation
from registrar.schedules import queries as schedule_queries
from registrar.schedules import timing as schedule_timing
from registrar.schedules.calendar import CALENDAR_PARAMS, calendar, calendar_params
from registrar.schedules.timing import InvalidSchedule
from registrar.schedules.validation import ScheduleRefused

MAX_PAGE_SIZE = 200
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
CREATE_FIELDS = ("name", "description", "model_name", "source_training_run_id", "training_config", "request_id",
                 *schedule_timing.TIMING_FIELDS)
PATCH_FIELDS = ("request_id", *validation.EDITABLE_FIELDS)
ACTION_FIELDS = ("request_id",)


def _request_id(body: dict[str, Any]) -> str:
    value = body.get("request_id")
    if value is None:
        return uuid.uuid4().hex
    if not isinstance(value, str) or not _REQUEST_ID_RE.match(value):
        raise BadParameter("request_id", "must be 1-128 letters, digits, '_' or '-'")
    return value


def _fields(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    frozen = sorted(set(body) & set(validation.FROZEN_FIELDS) - set(allowed))
    if frozen:
        raise BadParameter(frozen[0], "is frozen at creation: only name, description and timing can change "
                                      "(create a new schedule to train differently)")
    known_fields(body, allowed)


def register(app, api: Api) -> None:
    store, services = api.store, api.services

    @app.errorhandler(InvalidSchedule)
    def invalid_schedule(exc: InvalidSchedule):
        return error(400, f"invalid field {exc.field!r}: {exc.message}", parameter=exc.field)

    @app.errorhandler(ScheduleRefused)
    def refused(exc: ScheduleRefused):
        extra: dict[str, Any] = {}
        if exc.field and exc.status == 400:
            extra["parameter"] = exc.field
        if exc.schedule_id:
            extra["schedule_id"] = exc.schedule_id
        return error(exc.status, exc.message, **extra)

    def _side_effect_failed(exc: Exception, what: str, schedule_id: str):
        status = 503 if isinstance(exc, TransientError) else 502
        return error(status, f"{what} failed: {exc}; schedule {schedule_id} shows scheduler_job.status = 'error' "
                             "and the same request applies it again", schedule_id=schedule_id)

    def _handle(command):
        """The bus, with Firestore contention or unavailability answered 503 (nothing was written; retry)."""
        try:
            return services().bus.handle(command)
        except TransientError as exc:
            raise ScheduleRefused(503, f"the registry is busy or unavailable ({exc}); nothing was changed, retry "
                                       "the request", schedule_id=command.schedule_id) from exc

    def _existing(schedule_id: str) -> dict[str, Any]:
        check_id("schedule_id", schedule_id)
        doc = store().get(schedule_path(schedule_id))
        if doc is None:
            raise ScheduleRefused(404, f"schedule {schedule_id!r} does not exist")
        return doc

    def _apply(doc: dict[str, Any], status: int):
        try:
            doc = jobs.apply_job(services(), doc)
        except Exception as exc:  # recorded on the document by apply_job; answered, not hidden
            return _side_effect_failed(exc, "applying the Cloud Scheduler job", doc["schedule_id"])
        return jsonify(jsonable(without_internal(doc))), status

    # -----------------------------------------------------------------------------------------------------------

    # One rule per path (several methods each): the contract test maps every rule to its OpenAPI path.
    @app.route("/schedules", methods=["GET", "POST"])
    def schedules_collection():
        return create_schedule() if request.method == "POST" else list_schedules()

    @app.route("/schedules/<schedule_id>", methods=["GET", "PATCH", "DELETE"])
    def schedule_item(schedule_id: str):
        if request.method == "PATCH":
            return update_schedule(schedule_id)
        if request.method == "DELETE":
            return delete_schedule(schedule_id)
        return get_schedule(schedule_id)

    def create_schedule():
        known_params()
        body = json_body()
        _fields(body, CREATE_FIELDS)
        body = without_nulls(body)
        timing_fields = validation.check_timing_fields(body)
        now = services().now()
        has_run, has_config = "source_training_run_id" in body, "training_config" in body
        if has_run == has_config:
            raise BadParameter("training_config", "give exactly one of source_training_run_id (a training run as "
                                                  "template) or training_config (a full config)")
        if has_run:
            if not isinstance(body["source_training_run_id"], str):
                raise BadParameter("source_training_run_id", "must be a training run id")
            check_id("source_training_run_id", body["source_training_run_id"])
        config = validation.check_training_config(body["training_config"]) if has_config else None
        model_name = body.get("model_name")
        if model_name is not None or has_config:
            validation.check_model_name(model_name)
        name = validation.check_name(body.get("name"))
        description = validation.check_description(body.get("description"))
        timing = schedule_timing.parse_timing(timing_fields, now=now)
        request_id = _request_id(body)
        schedule_id = schedule_commands.new_schedule_id(request_id)
        outcome = _handle(schedule_commands.CreateSchedule(
            schedule_id=schedule_id, request_id=request_id, name=name, description=description,
            model_name=model_name, timing=timing.to_doc(), training_config=config,
            source_training_run_id=body.get("source_training_run_id"), occurred_at=now,
            requested_by=caller()))
        doc = store().get(schedule_path(schedule_id))
        if doc is None:
            raise ScheduleRefused(409, f"request_id {request_id!r} created schedule {schedule_id}, which has since "
                                       "been deleted; use a new request_id", schedule_id=schedule_id)
        return _apply(doc, 201 if outcome.status == "applied" else 200)

    def list_schedules():
        known_params("model_name", "status", "page_size", "page_token")
        model_name = request.args.get("model_name") or None
        status = choice_param("status", ("all", *validation.STATUSES), "all")
        if model_name is not None:
            try:
                validation.check_model_name(model_name)
            except InvalidSchedule as exc:
                raise BadParameter("model_name", exc.message) from None
        page_size = int_param("page_size", 50, 1, MAX_PAGE_SIZE)
        fingerprint = query_fingerprint(model_name, status)
        token = request.args.get("page_token")
        offset = decode_page_token(token, fingerprint, changed="filters") if token else 0
        docs = schedule_queries.list_schedules(store(), model_name=model_name, status=status)
        page = docs[offset:offset + page_size]
        following = offset + len(page)
        return jsonify(jsonable({
            "schedules": page,
            "total_size": len(docs),
            "next_page_token": encode_page_token(following, fingerprint) if following < len(docs) else None,
        }))

    def get_schedule(schedule_id: str):
        known_params()
        return jsonify(jsonable(without_internal(_existing(schedule_id))))

    @app.get("/schedules/<schedule_id>/history")
    def schedule_history(schedule_id: str):
        known_params("limit")
        check_id("schedule_id", schedule_id)
        limit = int_param("limit", 200, 1, 1000)
        entries = history.schedule_history(store(), schedule_id, limit)
        if not entries and store().get(schedule_path(schedule_id)) is None:
            raise ScheduleRefused(404, f"schedule {schedule_id!r} does not exist and has no history")
        return jsonify(jsonable({"history": entries}))

    def update_schedule(schedule_id: str):
        known_params()
        body = json_body()
        _fields(body, PATCH_FIELDS)
        body = {k: v for k, v in body.items() if v is not None or k in validation.RESETTABLE_FIELDS}
        changes = {k: v for k, v in body.items() if k in validation.EDITABLE_FIELDS}
        if not changes:
            raise BadParameter("body", f"names no field to change (editable: {', '.join(validation.EDITABLE_FIELDS)})")
        changes.update(validation.check_timing_fields(changes))
        if "name" in changes:
            validation.check_name(changes["name"])
        if "description" in changes:
            validation.check_description(changes["description"])
        doc = _existing(schedule_id)
        now = services().now()
        validation.merged_timing(doc, changes, now)  # 400 naming the field before anything is written
        _handle(schedule_commands.UpdateScheduleTiming(
            schedule_id=schedule_id, request_id=_request_id(body), changes=changes, occurred_at=now,
            requested_by=caller()))
        return _apply(_existing(schedule_id), 200)

    def _action(schedule_id: str, command_type):
        known_params()
        body = json_body()
        _fields(body, ACTION_FIELDS)
        body = without_nulls(body)
        _existing(schedule_id)
        _handle(command_type(schedule_id=schedule_id, request_id=_request_id(body),
                                           occurred_at=services().now(), requested_by=caller()))
        return _apply(_existing(schedule_id), 200)

    @app.post("/schedules/<schedule_id>:pause")
    def pause_schedule(schedule_id: str):
        return _action(schedule_id, schedule_commands.PauseSchedule)

    @app.post("/schedules/<schedule_id>:resume")
    def resume_schedule(schedule_id: str):
        return _action(schedule_id, schedule_commands.ResumeSchedule)

    @app.post("/schedules/<schedule_id>:trigger")
    def trigger_schedule(schedule_id: str):
        """Publish a tick for the slot `now` (to the second); on_schedule_tick creates and submits the run."""
        known_params()
        body = json_body()
        _fields(body, ACTION_FIELDS)
        body = without_nulls(body)
        doc = _existing(schedule_id)
        if doc["status"] != "active":
            raise ScheduleRefused(409, f"schedule {schedule_id} is {doc['status']}; only an active schedule can be "
                                       "triggered", schedule_id=schedule_id)
        slot = services().now().replace(microsecond=0)
        payload = jobs.tick_payload(schedule_id, slot, trigger="manual", requested_by=caller())
        run_id = schedule_timing.training_run_id(schedule_id, slot)
        try:
            services().bus.publisher.publish(jobs.TICKS_TOPIC, run_id, payload)
        except TransientError as exc:
            return error(503, f"publishing the tick to {jobs.TICKS_TOPIC} failed: {exc}; nothing was "
                              "triggered, try again", schedule_id=schedule_id)
        return jsonify(jsonable({"schedule_id": schedule_id, "slot": slot, "training_run_id": run_id,
                                 "topic": jobs.TICKS_TOPIC})), 202

    def delete_schedule(schedule_id: str):
        known_params()
        doc = _existing(schedule_id)
        try:
            job_deleted = jobs.delete_job(services(), doc)
        except Exception as exc:  # recorded on the document by delete_job; the schedule stays until it succeeds
            return _side_effect_failed(exc, "deleting the Cloud Scheduler job", schedule_id)
        _handle(schedule_commands.DeleteSchedule(schedule_id=schedule_id, occurred_at=services().now(),
                                                        requested_by=caller()))
        return jsonify({"schedule_id": schedule_id, "model_name": doc["model_name"], "deleted": True,
                        "scheduler_job_deleted": job_deleted, "job_id": jobs.job_id_for(schedule_id)})

    @app.get("/calendar")
    def training_calendar():
        known_params(*CALENDAR_PARAMS)
        return jsonify(jsonable(calendar(store(), now=api.now(), **calendar_params())))
