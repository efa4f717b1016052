"""Routes of releases: promoting a version to an alias, deciding promotions, and the two policies.

Writes go through the message bus in the caller's name (the verified principal). A promotion of an unprotected
alias is applied at once (Vertex AI MergeVersionAliases, then the audit entry moves the registry's alias); one of
a protected alias waits, `pending`, for an approver other than the requester. A refusal of the requirements is
answered 409 with the checks; the promotion is kept (status `refused`) so the attempt is in the history.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from flask import jsonify, request

from registrar.api.access import caller, known_fields
from registrar.api.context import Api, known_model
from registrar.kernel.clock import utcnow
from registrar.kernel.errors import InvalidField, TransientError
from registrar.kernel.http import (
    BadParameter,
    body_text,
    check_id,
    choice_param,
    error,
    json_body,
    jsonable,
    known_params,
    without_nulls,
)
from registrar.kernel.model import is_valid_alias
from registrar.kernel.paths import promotion_path
from registrar.kernel.ports import AliasWriter
from registrar.releases import queries
from registrar.releases.commands import (
    APPROVE,
    REJECT,
    DecidePromotion,
    Refused,
    RequestPromotion,
    UpdateAccessPolicy,
    UpdateReleasePolicy,
    new_promotion_id,
)
from registrar.releases.handlers import EXPIRED, FAILED, PENDING, REFUSED, STATUSES
from registrar.releases.policy import parse_policy

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_PROMOTION_ID_RE = re.compile(r"^prm-[0-9a-f]{20}$")


def _request_id(body: dict[str, Any]) -> str:
    value = body.get("request_id", uuid.uuid4().hex)
    if not isinstance(value, str) or not _REQUEST_ID_RE.match(value):
        raise BadParameter("request_id", "must be 8-64 letters, digits, '_' or '-'")
    return value


def _promotion_id(value: str) -> str:
    if not _PROMOTION_ID_RE.match(value):
        raise BadParameter("promotion_id", "must be `prm-` and 20 hex digits")
    return value


def register(app, api: Api) -> None:
    store, services = api.store, api.services

    def now():
        return services().now() if api.services_factory is not None else utcnow()

    @app.errorhandler(Refused)
    def refused(exc: Refused):
        return error(exc.status, exc.message, **({"promotion_id": exc.promotion_id} if exc.promotion_id else {}))

    def handle(command):
        """The bus: a refused field is a 400 naming it; Firestore or Vertex AI unavailable, a 503 (repeat it)."""
        try:
            return services().bus.handle(command)
        except InvalidField as exc:
            raise BadParameter(exc.field, exc.message) from None
        except TransientError as exc:
            raise Refused(503, f"the registry or Vertex AI is busy or unavailable ({exc}); repeat the request") from exc

    def can_move_aliases() -> None:
        """Before anything is recorded: without Vertex AI's write side no alias can be moved (503, as deploys
        without a publisher are)."""
        if not isinstance(services().registry, AliasWriter):
            raise Refused(503, "promotions are not configured on this API: no Vertex AI endpoint to move aliases "
                               "(VERTEX_API_ENDPOINT on the local stack)")

    def promotion_answer(promotion_id: str, created: bool):
        view = queries.promotion(store(), promotion_id, services().now())
        if view["status"] == REFUSED:
            return error(409, view.get("failure") or "refused", promotion_id=promotion_id, checks=view["checks"])
        if view["status"] == FAILED:
            return error(502, f"Vertex AI did not move the alias: {view.get('failure')}", promotion_id=promotion_id)
        status = 201 if created else 200
        if view["status"] == PENDING:
            status = 202 if created else 200
        return jsonify(jsonable(view)), status

    @app.post("/models/<model_id>/versions/<version_id>:promote")
    def promote_version(model_id: str, version_id: str):
        known_params()
        check_id("model_id", model_id)
        check_id("version_id", version_id)
        body = without_nulls(json_body())
        known_fields(body, ("alias", "reason", "request_id"))
        alias = body.get("alias")
        if not isinstance(alias, str) or not is_valid_alias(alias):
            raise BadParameter("alias", "must be a Vertex AI alias: [a-z][a-zA-Z0-9-]{0,126}[a-z0-9] (or default)")
        reason = body_text(body, "reason", required=True)
        request_id = _request_id(body)
        known_model(store(), model_id, version_id)
        can_move_aliases()
        promotion_id = new_promotion_id(request_id)
        existed = store().get(promotion_path(promotion_id)) is not None
        handle(RequestPromotion(promotion_id=promotion_id, model_id=model_id, version_id=version_id, alias=alias,
                                reason=reason, requested_by=caller(), requested_at=services().now(),
                                release_id=promotion_id))
        return promotion_answer(promotion_id, created=not existed)

    @app.get("/promotions")
    def list_promotions():
        known_params("status", "model_id")
        status = choice_param("status", ("all", *STATUSES), "all")
        model_id = request.args.get("model_id")
        if model_id is not None:
            check_id("model_id", model_id)
        rows = queries.promotions(store(), now(), status=None if status == "all" else status, model_id=model_id)
        return jsonify(jsonable({"promotions": rows}))

    @app.get("/promotions/<promotion_id>")
    def get_promotion(promotion_id: str):
        known_params()
        view = queries.promotion(store(), _promotion_id(promotion_id), now())
        if view is None:
            return error(404, f"promotion {promotion_id!r} does not exist")
        return jsonify(jsonable(view))

    def decide(promotion_id: str, decision: str):
        known_params()
        _promotion_id(promotion_id)
        body = without_nulls(json_body())
        known_fields(body, ("reason",))
        reason = body_text(body, "reason", required=decision == REJECT) or ""
        if decision == APPROVE:
            can_move_aliases()
        handle(DecidePromotion(promotion_id=promotion_id, decision=decision, decided_by=caller(),
                               decided_at=services().now(), reason=reason))
        view = queries.promotion(store(), promotion_id, services().now())
        if view["status"] in (REFUSED, EXPIRED):
            return error(409, f"promotion {promotion_id} is {view['status']}: "
                              f"{view.get('failure') or 'its time to be decided ran out'}", promotion_id=promotion_id)
        if view["status"] == FAILED:
            return error(502, f"approved, but Vertex AI did not move the alias: {view.get('failure')}",
                         promotion_id=promotion_id)
        return jsonify(jsonable(view))

    @app.post("/promotions/<promotion_id>:approve")
    def approve_promotion(promotion_id: str):
        return decide(promotion_id, APPROVE)

    @app.post("/promotions/<promotion_id>:reject")
    def reject_promotion(promotion_id: str):
        return decide(promotion_id, REJECT)

    # -- the access policy ---------------------------------------------------------------------------------------

    @app.route("/policy", methods=["GET", "PUT"])
    def policy():
        known_params()
        if request.method == "GET":
            return jsonify(jsonable(api.access.policy().to_doc()))
        body = json_body()
        for echoed in ("updated_by", "updated_at"):  # what GET answered, sent back: not the caller's to set
            body.pop(echoed, None)
        revision = body.pop("revision", None)
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise BadParameter("revision", "must be the revision of the policy you edited (GET /policy), an integer")
        try:
            parse_policy(body)  # 400 naming the field before the revision is compared
        except InvalidField as exc:
            raise BadParameter(exc.field, exc.message) from None
        handle(UpdateAccessPolicy(policy=body, expected_revision=revision, updated_by=caller(),
                                  occurred_at=services().now(), request_id=uuid.uuid4().hex))
        return jsonify(jsonable(api.access.policy().to_doc()))

    # -- a model's release policy --------------------------------------------------------------------------------

    @app.route("/models/<model_id>/release-policy", methods=["GET", "PUT"])
    def release_policy(model_id: str):
        known_params()
        check_id("model_id", model_id)
        model = known_model(store(), model_id)
        if request.method == "PUT":
            handle(UpdateReleasePolicy(model_id=model_id, policy=json_body(required=True), updated_by=caller(),
                                       occurred_at=services().now(), request_id=uuid.uuid4().hex))
            model = known_model(store(), model_id)
        return jsonify(jsonable(queries.release_policy(model)))

