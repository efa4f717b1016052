"""Continuous delivery, opt in per model: when a new version is registered and blessed, deploy it with a preset to
a staging service and/or ask for an alias to be promoted to it (through the protected-alias rules, so a protected
alias still waits for an approver).

The policy is kept on the model's document (`release_policy`), off unless saved with `enabled: true`. It acts as
`release-policy:<model id>`: that is the principal its deploy requests and promotion requests name in the history.
The facts that can make a version registered and blessed (an upload, a label update, its run's evaluation arriving
after the upload) decide, in their own transaction, whether they start a release (`with_release`); the follow-up
carries it out. Only the model's newest
live version is delivered, once; the request ids derive from (model, version, policy revision), so a redelivered
fact starts nothing new.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.deployments.naming import service_name_for, validate_service_name
from registrar.deployments.requests import DEPLOY_REQUESTS_TOPIC, deploy_request
from registrar.deployments.settings import PRESETS, InvalidSetting, resolve_settings
from registrar.kernel.changes import Change, Context
from registrar.kernel.errors import InvalidField
from registrar.kernel.ids import stable_id
from registrar.kernel.logs import log
from registrar.kernel.model import is_valid_alias, run_versions
from registrar.kernel.paths import model_path, run_path
from registrar.kernel.store import AbstractUnitOfWork
from registrar.messaging.bus import Handler
from registrar.releases.commands import RequestPromotion, new_promotion_id

STAGING_ENDPOINT = "staging"
DEFAULT_STAGING_PRESET = "development"
RELEASE_POLICY_FIELDS = ("enabled", "deploy", "promote")


def actor(model_id: str) -> str:
    """Who acts when the release policy of `model_id` does: the history names it as the requester."""
    return f"release-policy:{model_id}"


def release_id_for(model_id: str, version_id: str, revision: int) -> str:
    """The release a version's automatic delivery is: its deploy request id, and what its promotion records."""
    return "rel-" + stable_id("release", model_id, version_id, str(revision), length=24)


def parse_release_policy(body: Mapping[str, Any]) -> dict[str, Any]:
    """{enabled, deploy: {preset, service_name} | null, promote: {alias} | null}; InvalidField names what is wrong."""
    if not isinstance(body, Mapping):
        raise InvalidField("body", "must be a JSON object")
    unknown = sorted(set(body) - set(RELEASE_POLICY_FIELDS))
    if unknown:
        raise InvalidField(unknown[0], f"is not a field of a release policy (known: {', '.join(RELEASE_POLICY_FIELDS)})")
    enabled = body.get("enabled", False)
    if not isinstance(enabled, bool):
        raise InvalidField("enabled", "must be true or false")
    deploy = body.get("deploy")
    if deploy is not None:
        if not isinstance(deploy, Mapping) or set(deploy) - {"preset", "service_name"}:
            raise InvalidField("deploy", "must be null or {preset, service_name}")
        preset = deploy.get("preset")
        if preset is None:
            preset = DEFAULT_STAGING_PRESET
        elif not isinstance(preset, str) or preset not in PRESETS:
            raise InvalidField("deploy.preset", f"{preset!r} is not a preset; choose one of {', '.join(PRESETS)}")
        service = deploy.get("service_name")
        if service is not None:
            try:
                validate_service_name(service)
            except InvalidSetting as exc:
                raise InvalidField("deploy.service_name", exc.message) from None
        deploy = {"preset": preset, "service_name": service}
    promote = body.get("promote")
    if promote is not None:
        if not isinstance(promote, Mapping) or set(promote) != {"alias"}:
            raise InvalidField("promote", "must be null or {alias}")
        if not isinstance(promote["alias"], str) or not is_valid_alias(promote["alias"]):
            raise InvalidField("promote.alias", "is not a valid Vertex AI alias ([a-z][a-zA-Z0-9-]{0,126}[a-z0-9])")
        promote = {"alias": promote["alias"]}
    if enabled and deploy is None and promote is None:
        raise InvalidField("enabled", "an enabled release policy must deploy, promote, or both")
    return {"enabled": enabled, "deploy": deploy, "promote": promote}


def with_release(handler: Handler) -> Handler:
    """`handler` (an upload, a label update, a run's evaluation), then, in the same transaction, the release its fact
    starts: when the model's release policy is enabled and a version the fact touched is now its newest live version
    and blessed, a `model.release_started` change naming the release, and the release kept on the model (once per
    version)."""

    def handle(cmd, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
        changes = handler(cmd, uow, ctx)
        started = []
        for model_id, version_id in _touched(cmd, changes):
            started += _plan(model_id, version_id, uow, ctx)
        return changes + started

    handle.__name__ = getattr(handler, "__name__", "handle")
    return handle


def _touched(command, changes: list[Change]) -> list[tuple[str, str]]:
    """The versions a fact may have made registered and blessed: the one a registry fact names, and those a run's
    late evaluation reached (`model.version_evaluated`)."""
    touched = []
    if hasattr(command, "model_id"):
        version_id = command.version.version_id if getattr(command, "version", None) else command.version_id
        touched.append((command.model_id, version_id))
    touched += [(c.model_id, c.version_id) for c in changes if c.kind == "model.version_evaluated"]
    return list(dict.fromkeys(touched))


def _plan(model_id: str, touched: str | None, uow: AbstractUnitOfWork, ctx: Context) -> list[Change]:
    doc = uow.get(model_path(model_id))  # read (or written) by the handler already: no second read
    policy = (doc or {}).get("release_policy") or {}
    if not policy.get("enabled"):
        return []
    version_id = doc.get("latest_version_id")
    version = (doc.get("versions") or {}).get(version_id) or {}
    if version_id is None or version_id != touched or version.get("blessed") is not True:
        return []
    if (policy.get("last_release") or {}).get("version_id") == version_id:
        return []
    release = {"release_id": release_id_for(model_id, version_id, int(policy.get("revision") or 0)),
               "version_id": version_id, "deploy": policy.get("deploy"), "promote": policy.get("promote"),
               "started_at": ctx.now()}
    uow.set(model_path(model_id), {**doc, "release_policy": {**policy, "last_release": release}})
    return [Change("model.release_started", ctx.now(), model_id, version_id,
                   details={**release, "requested_by": actor(model_id)})]


def deliver(services, command, outcome) -> None:
    """The follow-up: carry out the release the transaction started (a redelivery — a duplicate — carries out the
    one kept on the model again; every step is idempotent on the release id)."""
    started = [(c.model_id, c.details) for c in outcome.changes if c.kind == "model.release_started"]
    if not started and outcome.status == "duplicate":
        started = _kept_releases(services, command)
    for model_id, release in started:
        _carry_out(services, model_id, release)


def _kept_releases(services, command) -> list[tuple[str, Mapping[str, Any]]]:
    """The releases a fact delivered again may have started: kept on the models of the versions it touches."""
    if hasattr(command, "model_id"):
        touched = _touched(command, [])
    elif getattr(command, "blessed", None) is True:  # only a blessing can have made a run's version releasable
        touched = sorted(run_versions(services.store.get(run_path(command.training_run_id))))
    else:
        return []
    kept = []
    for model_id, version_id in touched:
        doc = services.store.get(model_path(model_id)) or {}
        release = ((doc.get("release_policy") or {}).get("last_release")) or {}
        if release and release.get("version_id") == version_id:
            kept.append((model_id, release))
    return kept


def _carry_out(services, model_id: str, release: Mapping[str, Any]) -> None:
    release_id, version_id = release["release_id"], release["version_id"]
    by, now = actor(model_id), services.now()
    if release.get("deploy"):
        settings = resolve_settings(release["deploy"]["preset"])
        service = release["deploy"].get("service_name") or service_name_for(model_id, STAGING_ENDPOINT)
        payload = deploy_request(request_id=release_id, model_id=model_id, version_id=version_id, settings=settings,
                                 service_name=service, requested_at=now, requested_by=by)
        services.bus.publisher.publish(DEPLOY_REQUESTS_TOPIC, release_id, payload)
        log("INFO", f"release policy of {model_id}: deploying version {version_id} to {service}",
            model_id=model_id, release_id=release_id)
    if release.get("promote"):
        alias = release["promote"]["alias"]
        services.bus.handle(RequestPromotion(
            promotion_id=new_promotion_id(f"{release_id}:{alias}"), model_id=model_id, version_id=version_id,
            alias=alias, reason=f"release policy: version {version_id} is registered and blessed",
            requested_by=by, requested_at=now, release_id=release_id))
