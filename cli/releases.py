"""`registrar promote / promotions / approve / reject / policy`: releasing models through the registry API.

Who acts is the API's verified caller ($REGISTRAR_ID_TOKEN, or the local user on the local stack); the API checks
the role each command needs (operator to promote, approver to decide and to edit the policies).
"""

from __future__ import annotations

from typing import Any

import click
from registrar_cli.main import _table, _text, api_get, api_options, api_send, print_body, print_json

ROLES = ("viewer", "operator", "approver")
STATUSES = ("all", "pending", "approved", "applied", "rejected", "expired", "refused", "failed")
PRESETS = ("development", "production", "high-traffic")
WRITE_TIMEOUT = 120


def promotion_table(rows: list[dict[str, Any]], title: str = "promotions"):
    table = _table(title, "id", "model", "version", "alias", "status", "requested by", "decided by", "requested",
                   "expires", "reason")
    table.columns[0].min_width = len("prm-") + 20  # an id is what one copies: never folded
    for p in rows:
        table.add_row(p["promotion_id"], p["model_id"], p["version_id"], p["alias"], p["status"], p["requested_by"],
                      _text(p.get("decided_by")), _text(p.get("requested_at")), _text(p.get("expires_at")),
                      _text(p.get("failure") or p.get("reason")))
    return table


def _outcome(body: dict[str, Any]) -> str:
    status = body["status"]
    if status == "pending":
        return (f"promotion {body['promotion_id']} is pending: {body['alias']} is protected; an approver other than "
                f"{body['requested_by']} decides it (`registrar approve {body['promotion_id']}`) before "
                f"{_text(body.get('expires_at'))}")
    if status == "applied":
        moved = f" (from version {body['previous_version_id']})" if body.get("previous_version_id") else ""
        approved = f", approved by {body['decided_by']}" if body.get("decided_by") else ""
        return (f"{body['alias']} → version {body['version_id']} of {body['model_id']}{moved}: applied in Vertex AI "
                f"(asked by {body['requested_by']}{approved})")
    return f"promotion {body['promotion_id']}: {status}"


@click.command()
@click.argument("model_id")
@click.option("--version", "version_id", required=True, metavar="V", help="The version to give the alias.")
@click.option("--alias", required=True, help="The Vertex AI alias, e.g. production.")
@click.option("--reason", required=True, help="Why (kept in the history).")
@click.option("--request-id", metavar="ID", help="Makes a repeated command the same promotion.")
@api_options
def promote(model_id, version_id, alias, reason, request_id, api, as_json) -> None:
    """Move ALIAS to a version of MODEL_ID in Vertex AI (a protected alias waits for an approver)."""
    body = {"alias": alias, "reason": reason, **({"request_id": request_id} if request_id else {})}
    answer = api_send(api, "POST", f"/models/{model_id}/versions/{version_id}:promote", json=body,
                      timeout=WRITE_TIMEOUT)
    print_json(answer) if as_json else click.echo(_outcome(answer))


@click.command()
@click.option("--status", type=click.Choice(STATUSES), default="pending", show_default=True)
@click.option("--model", "model_id", metavar="MODEL_ID", help="Only this model's.")
@api_options
def promotions(status, model_id, api, as_json) -> None:
    """Promotion requests (pending ones by default), newest first."""
    body = api_get(api, "/promotions", {"status": status, "model_id": model_id})
    print_body(body, as_json, lambda b: promotion_table(b["promotions"], f"promotions ({status})"))


@click.command()
@click.argument("promotion_id")
@click.option("--reason", help="Why (kept in the history).")
@api_options
def approve(promotion_id, reason, api, as_json) -> None:
    """Approve a pending promotion (you must not be its requester); the alias then moves in Vertex AI."""
    answer = api_send(api, "POST", f"/promotions/{promotion_id}:approve",
                      json={"reason": reason} if reason else {}, timeout=WRITE_TIMEOUT)
    print_json(answer) if as_json else click.echo(_outcome(answer))


@click.command()
@click.argument("promotion_id")
@click.option("--reason", required=True, help="Why (kept in the history).")
@api_options
def reject(promotion_id, reason, api, as_json) -> None:
    """Reject a pending promotion."""
    answer = api_send(api, "POST", f"/promotions/{promotion_id}:reject", json={"reason": reason},
                      timeout=WRITE_TIMEOUT)
    print_json(answer) if as_json else click.echo(f"promotion {promotion_id} rejected by {answer['decided_by']}")


# ---------------------------------------------------------------------------------------------------------------
# The access policy and release policies


def policy_table(body: dict[str, Any]):
    table = _table(f"access policy (revision {body['revision']}, by {_text(body.get('updated_by'))})", "what", "value")
    for role in ROLES:
        table.add_row(role, ", ".join(body["roles"].get(role) or []) or "-")
    for alias, rule in body["protected_aliases"].items():
        tolerance = rule["metric_tolerance"]
        table.add_row(f"protected: {alias}", f"blessed: {_text(rule['require_blessed'])}; metric tolerance: "
                                             f"{'not compared' if tolerance is None else tolerance}; approval by "
                                             "another principal")
    table.add_row("promotion expires after", f"{body['promotion_ttl_hours']} h")
    return table


def _edit(api: str | None, change) -> dict[str, Any]:
    """Read the policy, change it, save it naming the revision read (the API refuses a save over a newer one)."""
    current = api_get(api, "/policy")
    body = {k: current[k] for k in ("roles", "protected_aliases", "promotion_ttl_hours")}
    change(body)
    return api_send(api, "PUT", "/policy", json={**body, "revision": current["revision"]}, timeout=WRITE_TIMEOUT)


@click.group()
def policy() -> None:
    """The access policy (roles, protected aliases) and models' release policies; changes need an approver."""


@policy.command("show")
@api_options
def policy_show(api, as_json) -> None:
    """The policy in force."""
    print_body(api_get(api, "/policy"), as_json, policy_table)


@policy.command("grant")
@click.argument("role", type=click.Choice(ROLES))
@click.argument("member")
@api_options
def policy_grant(role, member, api, as_json) -> None:
    """Give ROLE to MEMBER (user:EMAIL, serviceAccount:EMAIL, domain:DOMAIN; local:NAME on the local stack)."""
    def change(body):
        members = body["roles"].setdefault(role, [])
        if member not in members:
            members.append(member)
    print_body(_edit(api, change), as_json, policy_table)


@policy.command("revoke")
@click.argument("role", type=click.Choice(ROLES))
@click.argument("member")
@api_options
def policy_revoke(role, member, api, as_json) -> None:
    """Take ROLE from MEMBER."""
    def change(body):
        members = body["roles"].get(role) or []
        if member not in members:
            raise click.ClickException(f"{member} does not hold {role} as a member of its own")
        members.remove(member)
    print_body(_edit(api, change), as_json, policy_table)


@policy.command("protect")
@click.argument("alias")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="How much worse than the holder's primary metric a version's may be.")
@click.option("--no-metric", is_flag=True, help="Do not compare metrics.")
@click.option("--require-blessed/--no-require-blessed", default=True, show_default=True)
@api_options
def policy_protect(alias, tolerance, no_metric, require_blessed, api, as_json) -> None:
    """Protect ALIAS (or change its requirements): promoting to it then needs an approval by another principal."""
    def change(body):
        body["protected_aliases"][alias] = {"require_blessed": require_blessed,
                                            "metric_tolerance": None if no_metric else tolerance}
    print_body(_edit(api, change), as_json, policy_table)


@policy.command("unprotect")
@click.argument("alias")
@api_options
def policy_unprotect(alias, api, as_json) -> None:
    """Stop protecting ALIAS."""
    def change(body):
        if body["protected_aliases"].pop(alias, None) is None:
            raise click.ClickException(f"{alias} is not protected")
    print_body(_edit(api, change), as_json, policy_table)


@policy.command("ttl")
@click.argument("hours", type=click.IntRange(1, 720))
@api_options
def policy_ttl(hours, api, as_json) -> None:
    """How long a promotion may wait for a decision before it expires."""
    def change(body):
        body["promotion_ttl_hours"] = hours
    print_body(_edit(api, change), as_json, policy_table)


def release_table(body: dict[str, Any]):
    table = _table(f"release policy of {body['model_id']} (revision {body['revision']})", "what", "value")
    deploy, promote = body.get("deploy"), body.get("promote")
    table.add_row("enabled", _text(body["enabled"]))
    table.add_row("deploy", f"{deploy['preset']} to {deploy.get('service_name') or 'the staging service'}"
                  if deploy else "-")
    table.add_row("promote", promote["alias"] if promote else "-")
    release = body.get("last_release") or {}
    table.add_row("last release", f"{release['release_id']}: version {release['version_id']}" if release else "-")
    return table


@policy.command("release")
@click.argument("model_id")
@click.option("--enable/--disable", default=None, help="Turn continuous delivery on or off.")
@click.option("--deploy-preset", type=click.Choice(PRESETS), help="Deploy each new blessed version with this preset.")
@click.option("--service-name", metavar="NAME", help="The staging service (default: the model's own staging service).")
@click.option("--no-deploy", is_flag=True, help="Do not deploy.")
@click.option("--promote", "alias", metavar="ALIAS", help="Ask for ALIAS to move to each new blessed version.")
@click.option("--no-promote", is_flag=True, help="Do not promote.")
@api_options
def policy_release(model_id, enable, deploy_preset, service_name, no_deploy, alias, no_promote, api, as_json) -> None:
    """Show or set MODEL_ID's release policy (continuous delivery); without options, show it."""
    path = f"/models/{model_id}/release-policy"
    current = api_get(api, path)
    if enable is None and not (deploy_preset or service_name or no_deploy or alias or no_promote):
        print_body(current, as_json, release_table)
        return
    body = {k: current[k] for k in ("enabled", "deploy", "promote")}
    if enable is not None:
        body["enabled"] = enable
    if deploy_preset or service_name:
        body["deploy"] = {"preset": deploy_preset or (body["deploy"] or {}).get("preset") or "development",
                          "service_name": service_name or (body["deploy"] or {}).get("service_name")}
    if no_deploy:
        body["deploy"] = None
    if alias:
        body["promote"] = {"alias": alias}
    if no_promote:
        body["promote"] = None
    print_body(api_send(api, "PUT", path, json=body, timeout=WRITE_TIMEOUT), as_json, release_table)


__all__ = ["approve", "policy", "promote", "promotions", "reject"]
