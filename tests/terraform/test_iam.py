"""Each function's service account holds exactly what its code calls: derived from the wiring, checked in terraform/.

What a function needs: the port methods its wiring names (`registrar.bootstrap.WIRING`), the adapter production
builds for each of those ports from the environment Terraform gives the functions (`bootstrap.ADAPTERS` on
`Config.from_environ` of `local.function_environment`), and what each call needs (`registrar.adapters.permissions`),
on the project or on one bucket, service account or topic the configuration names; plus Firestore and publishing
registry events, which every function does.

What it holds: the roles and bindings terraform/ gives its service account (`local.function_access` through
`modules/event_function` or the HTTP function's resources), each role's permissions from Google's role reference
(`ROLES`, the permissions of each role that any adapter needs) or from the custom role's own list.

Exactly: every permission needed is granted; every role and binding granted gives something needed that no other
grant gives (so removing any one breaks the function, and adding an unused one is reported); a custom role holds
nothing its holders do not need; a role the test does not know (a broader one, say roles/run.admin) is reported.
Also: function timeouts cover the operations they wait for, and every resource encrypted with var.kms_key_name has
its service agent granted on the key.
"""

from __future__ import annotations

import copy
import json
import re
from collections import defaultdict

import pytest
from registrar import bootstrap, wiring
from registrar.adapters import permissions
from registrar.config import Config
from registrar.kernel.ports import ServingPlatform
from registrar.wiring import Wiring
from test_consistency import TOPOLOGY_FILE, load_terraform

PROJECT = "registrar-test"

# What each predefined role gives of the permissions the adapters need (Google's references: Vertex AI
# https://cloud.google.com/iam/docs/roles-permissions/aiplatform, Cloud Run
# https://cloud.google.com/run/docs/reference/iam/roles, Cloud Scheduler
# https://cloud.google.com/scheduler/docs/access-control, Cloud Storage
# https://cloud.google.com/storage/docs/access-control/iam-roles, Pub/Sub
# https://cloud.google.com/pubsub/docs/access-control, IAM https://cloud.google.com/iam/docs/service-account-permissions,
# Firestore https://cloud.google.com/firestore/docs/security/iam). A role missing here is reported: find what it
# gives in the reference first, and prefer the narrowest role that gives what the code needs.
ROLES: dict[str, frozenset[str]] = {
    "roles/datastore.user": frozenset({"datastore.entities.get", "datastore.entities.list", "datastore.entities.create",
                                       "datastore.entities.update", "datastore.entities.delete"}),
    "roles/aiplatform.viewer": frozenset({"aiplatform.models.get", "aiplatform.models.list",
                                          "aiplatform.pipelineJobs.get", "aiplatform.metadataStores.get"}),
    "roles/aiplatform.user": frozenset({"aiplatform.models.get", "aiplatform.models.list", "aiplatform.models.upload",
                                        "aiplatform.pipelineJobs.create", "aiplatform.pipelineJobs.get",
                                        "aiplatform.metadataStores.get"}),
    "roles/run.viewer": frozenset({"run.services.get", "run.services.list", "run.operations.get", "run.revisions.get"}),
    # run.developer: read and write services, but no IAM policy changes (run.admin can make a service public)
    "roles/run.developer": frozenset({"run.services.get", "run.services.list", "run.services.create",
                                      "run.services.update", "run.services.delete", "run.operations.get",
                                      "run.revisions.get"}),
    "roles/run.invoker": frozenset({"run.routes.invoke"}),
    "roles/logging.viewer": frozenset({"logging.logEntries.list"}),
    "roles/cloudscheduler.viewer": frozenset({"cloudscheduler.jobs.get", "cloudscheduler.jobs.list"}),
    "roles/storage.objectViewer": frozenset({"storage.objects.get", "storage.objects.list"}),
    "roles/pubsub.publisher": frozenset({"pubsub.topics.publish"}),
    "roles/iam.serviceAccountUser": frozenset({"iam.serviceAccounts.actAs"}),
}

# The longest an event-driven function may run (Cloud Functions 2nd gen: 540 s,
# https://cloud.google.com/functions/docs/configuring/timeout), and what a function needs besides its longest wait.
EVENT_FUNCTION_MAX_TIMEOUT = 540
WAIT_MARGIN = 60

# How the root module hands each function its grants; if an expression changes, teach the test its meaning.
EVENT_FUNCTION_GRANTS = {
    "project_roles": '${merge({firestore = "roles/datastore.user"}, try(local.function_access[each.key].project_roles, {}))}',
    "publish_topics": ("${{for t in concat([local.events_topic], try(local.function_access[each.key].publish, [])) : "
                       "t => google_pubsub_topic.topic[t].id}}"),
    "read_buckets": "${try(local.function_access[each.key].read_buckets, {})}",
    "act_as_service_accounts": "${try(local.function_access[each.key].act_as, {})}",
    "timeout_seconds": "${try(local.function_timeouts[each.key], 300)}",
}
MODULE_BINDINGS = {  # modules/event_function: resource → (for_each, role)
    ("google_project_iam_member", "function"): ("${var.project_roles}", "${each.value}"),
    ("google_pubsub_topic_iam_member", "publish"): ("${var.publish_topics}", "roles/pubsub.publisher"),
    ("google_storage_bucket_iam_member", "read"): ("${var.read_buckets}", "roles/storage.objectViewer"),
    ("google_service_account_iam_member", "act_as"): ("${var.act_as_service_accounts}", "roles/iam.serviceAccountUser"),
}
HTTP_ROLES = ('${merge([for ep, f in local.http_functions : merge({"${ep} firestore" = {entry_point = ep, role = '
              '"roles/datastore.user"}}, {for label, role in try(local.function_access[ep].project_roles, {}) : '
              '"${ep} ${label}" => {entry_point = ep, role = role}})] ...)}')
HTTP_PUBLISH = ('${merge([for ep, f in local.http_functions : {for t in concat([local.events_topic], '
                'try(local.function_access[ep].publish, [])) : "${ep} ${t}" => {entry_point = ep, topic = t}}] ...)}')


# ----------------------------------------------------------------------------------------------------------
# Reading Terraform's values
# ----------------------------------------------------------------------------------------------------------


class Unresolvable(Exception):
    pass


def resolve(tf: dict, expr):
    """A string the root module computes, with its variables at their defaults and the project `PROJECT`."""
    if not isinstance(expr, str):
        return expr
    local = tf["root"]["locals"]
    resources = tf["root"]["resource"]
    whole = re.fullmatch(r'\$\{coalesce\(var\.(\w+), "(.*)"\)\}', expr)
    if whole:
        default = tf["root"]["variable"][whole.group(1)].get("default")
        return resolve(tf, default if default is not None else whole.group(2))

    def reference(match: re.Match) -> str:
        ref = match.group(1)
        if ref == "var.project_id":
            return PROJECT
        if m := re.fullmatch(r"(?:tostring\()?var\.(\w+)\)?", ref):
            default = tf["root"]["variable"][m.group(1)].get("default")
            if default is None:
                raise Unresolvable(f"var.{m.group(1)} has no default: teach the test")
            return str(default)
        if m := re.fullmatch(r"local\.(\w+)", ref):
            return resolve(tf, local[m.group(1)])
        if ref == "google_firestore_database.main.name":
            return resolve(tf, tf["root"]["variable"]["firestore_database"]["default"])
        if m := re.fullmatch(r"google_service_account\.(\w+)\.(email|name)", ref):
            return account_email(tf, m.group(1))
        if m := re.fullmatch(r"google_storage_bucket\.(\w+)\.name", ref):
            return resolve(tf, resources[("google_storage_bucket", m.group(1))]["name"])
        if m := re.fullmatch(r"google_project_iam_custom_role\.(\w+)\.id", ref):
            return f"custom:{m.group(1)}"
        raise Unresolvable(f"cannot evaluate ${{{ref}}}: teach the test")

    return re.sub(r"\$\{([^{}]+)\}", reference, expr)


def account_email(tf: dict, name: str) -> str:
    account_id = tf["root"]["resource"][("google_service_account", name)]["account_id"]
    return f"{account_id}@{PROJECT}.iam.gserviceaccount.com"


def terraform_config(tf: dict) -> Config:
    """The configuration the deployed functions read from the environment Terraform gives them."""
    env = {name: resolve(tf, value) for name, value in tf["root"]["locals"]["function_environment"].items()}
    return Config.from_environ({**env, "K_SERVICE": "registrar-function"})


def role_permissions(tf: dict, role: str) -> frozenset[str] | None:
    """What a role gives (of what the adapters need); a custom role: all it holds. None for an unknown role."""
    if role.startswith("custom:"):
        return frozenset(tf["root"]["resource"][("google_project_iam_custom_role", role[len("custom:"):])]["permissions"])
    return ROLES.get(role)


# ----------------------------------------------------------------------------------------------------------
# What each function needs, from its wiring
# ----------------------------------------------------------------------------------------------------------


Need = tuple[str, str, str]  # (permission, kind of resource, resource): ("run.services.get", "project", "")


def needed(config: Config, plan: Wiring) -> set[Need]:
    where = permissions.resources(config)
    adapters = {attr: build(config) for attr, build in bootstrap.ADAPTERS.items()}
    found: set[Need] = {(n.permission, "project", "") for n in permissions.PERMISSIONS["FirestoreStore"]["*"]}
    for call in plan.calls:
        adapter = adapters[wiring.PORTS[plan.port_of(call)]]
        for need in permissions.needs(adapter, call.__name__):
            if need.on == permissions.PROJECT:
                found.add((need.permission, "project", ""))
            else:
                resource = where[need.on]
                assert resource, f"{call.__qualname__} needs {need.permission} on the {need.on}, which is not configured"
                kind = "bucket" if "bucket" in need.on else "service account"
                found.add((need.permission, kind, resource))
    for topic in {config.events_topic, *plan.publishes}:
        for need in permissions.needs(adapters["publisher"], "publish_all"):
            found.add((need.permission, "topic", topic))
    return found


# ----------------------------------------------------------------------------------------------------------
# What each function holds, from Terraform
# ----------------------------------------------------------------------------------------------------------


Grant = tuple[str, str, str, str]  # (role, kind of resource, resource, label): ("roles/run.viewer", "project", "", …)


def granted(tf: dict) -> tuple[dict[str, list[Grant]], list[str]]:
    """entry point → its grants, and problems in how Terraform hands them out."""
    problems = []
    local = tf["root"]["locals"]
    access = local.get("function_access", {})
    events_topic = local["events_topic"]
    module = tf["root"]["module"]["event_function"]
    for arg, expected in EVENT_FUNCTION_GRANTS.items():
        if module.get(arg) != expected:
            problems.append(f"module.event_function {arg} is {module.get(arg)!r}: teach the test what it grants")
    for key, (for_each, role) in MODULE_BINDINGS.items():
        body = tf["event_function"]["resource"].get(key, {})
        if (body.get("for_each"), body.get("role"), body.get("member")) != (
                for_each, role, "serviceAccount:${google_service_account.function.email}"):
            problems.append(f"modules/event_function {key[0]}.{key[1]} does not grant {role} for each {for_each}")
    resources = tf["root"]["resource"]
    if resources.get(("google_project_iam_member", "http_function"), {}).get("for_each") != HTTP_ROLES:
        problems.append("the HTTP functions' project roles are not the ones the test understands")
    if resources.get(("google_pubsub_topic_iam_member", "http_function_publisher"), {}).get("for_each") != HTTP_PUBLISH:
        problems.append("the HTTP functions' publish grants are not the ones the test understands")

    grants: dict[str, list[Grant]] = defaultdict(list)
    consumers = [t["consumer"]["entry_point"] for t in topology(tf)["topics"] if t.get("consumer")]
    http = [f["entry_point"] for f in topology(tf).get("http_functions", [])]
    for ep in consumers + http:
        mine = access.get(ep, {})
        grants[ep].append(("roles/datastore.user", "project", "", "firestore"))
        for label, role in (mine.get("project_roles") or {}).items():
            grants[ep].append((resolve(tf, role), "project", "", label))
        for topic in [events_topic, *(mine.get("publish") or [])]:
            grants[ep].append(("roles/pubsub.publisher", "topic", topic, topic))
        if ep in consumers:
            for label, bucket in (mine.get("read_buckets") or {}).items():
                grants[ep].append(("roles/storage.objectViewer", "bucket", resolve(tf, bucket), label))
            for label, account in (mine.get("act_as") or {}).items():
                grants[ep].append(("roles/iam.serviceAccountUser", "service account", resolve(tf, account), label))
        elif mine.get("read_buckets") or mine.get("act_as"):
            problems.append(f"function_access gives {ep} read_buckets / act_as, which Terraform grants to event "
                            "functions only")
    return dict(grants), problems


def topology(tf: dict) -> dict:
    """The topology the root module reads (test_consistency proves it reads schemas/topology.json)."""
    return json.loads(TOPOLOGY_FILE.read_text())


# ----------------------------------------------------------------------------------------------------------
# The check
# ----------------------------------------------------------------------------------------------------------


def check_grants(tf: dict, wirings: dict[str, Wiring] | None = None) -> list[str]:
    wirings = bootstrap.WIRING if wirings is None else wirings
    config = terraform_config(tf)
    grants, problems = granted(tf)
    for ep in sorted(set(grants) ^ set(wirings)):
        problems.append(f"{ep} is {'deployed without a wiring' if ep in grants else 'wired but not deployed'}")
    for ep in sorted(set(grants) & set(wirings)):
        problems += check_function(tf, ep, needed(config, wirings[ep]), grants[ep])
    return problems


def check_function(tf: dict, ep: str, needs: set[Need], grants: list[Grant]) -> list[str]:
    problems = []
    gives: dict[Grant, frozenset[str]] = {}
    for grant in grants:
        perms = role_permissions(tf, grant[0])
        if perms is None:
            problems.append(f"{ep} holds {grant[0]}, which the test does not know: is it the narrowest role for what "
                            "it needs? (add it to ROLES from Google's role reference)")
            continue
        gives[grant] = perms
    for permission, kind, resource in sorted(needs):
        if not any(permission in perms and (g[1], g[2]) == (kind, resource) for g, perms in gives.items()):
            where = "on the project" if kind == "project" else f"on the {kind} {resource}"
            problems.append(f"{ep} needs {permission} {where}, which nothing granted to it gives")
    for grant, perms in gives.items():
        useful = {p for p, kind, resource in needs if (kind, resource) == (grant[1], grant[2]) and p in perms}
        others = set().union(*(p for g, p in gives.items() if g != grant and (g[1], g[2]) == (grant[1], grant[2])))
        where = "" if grant[1] == "project" else f" on the {grant[1]} {grant[2]}"
        if not useful - others:
            problems.append(f"{ep} holds {grant[0]}{where} ({grant[3]}), which gives nothing it needs that its other "
                            "grants do not")
        if grant[0].startswith("custom:") and perms - useful:
            problems.append(f"{ep} holds custom role {grant[0][len('custom:'):]} with {sorted(perms - useful)}, which "
                            "it does not need")
    return problems


# ----------------------------------------------------------------------------------------------------------
# Tests against the real files
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf() -> dict:
    return load_terraform()


def test_every_function_holds_exactly_what_its_wiring_needs(tf):
    assert check_grants(tf) == []


def test_the_register_retry_path_may_upload_to_vertex_and_read_the_artifacts(tf):
    config = terraform_config(tf)
    needs = needed(config, bootstrap.WIRING["on_deploy_request"])
    bucket = permissions.resources(config)[permissions.ARTIFACTS_BUCKET]
    assert {("aiplatform.models.upload", "project", ""), ("storage.objects.get", "bucket", bucket),
            ("storage.objects.list", "bucket", bucket)} <= needs
    assert bucket == f"{PROJECT}-registrar-artifacts"


def test_the_configuration_is_the_one_production_builds(tf):
    config = terraform_config(tf)
    built = {attr: type(build(config)).__name__ for attr, build in bootstrap.ADAPTERS.items()}
    assert built == {"registry": "VertexModelRegistry", "artifacts": "StorageArtifactStore",
                     "serving": "CloudRunServing", "scheduler": "CloudSchedulerJobs",
                     "runner": "VertexPipelineRunner", "publisher": "PubSubPublisher",
                     "change_log": "LoggingChangeLog", "model_server": "HttpModelServer"}
    assert permissions.resources(config) == {
        permissions.ARTIFACTS_BUCKET: f"{PROJECT}-registrar-artifacts",
        permissions.TEMPLATE_BUCKET: f"{PROJECT}-registrar-artifacts",
        permissions.SERVING_ACCOUNT: f"registrar-serving@{PROJECT}.iam.gserviceaccount.com",
        permissions.PIPELINE_ACCOUNT: f"registrar-pipeline@{PROJECT}.iam.gserviceaccount.com",
    }


# ----------------------------------------------------------------------------------------------------------
# The check bites
# ----------------------------------------------------------------------------------------------------------


def access(tf: dict, ep: str) -> dict:
    return tf["root"]["locals"]["function_access"][ep]


@pytest.mark.parametrize(("ep", "field", "label", "words"), [
    ("on_deploy_request", "project_roles", "run_developer", "on_deploy_request needs run.services.create"),
    ("on_deploy_request", "project_roles", "model_registrar", "on_deploy_request needs aiplatform.models.upload"),
    ("on_deploy_request", "read_buckets", "artifacts", "on_deploy_request needs storage.objects.get on the bucket"),
    ("on_deploy_request", "act_as", "serving", "needs iam.serviceAccounts.actAs on the service account registrar-serving"),
    ("on_schedule_tick", "project_roles", "pipeline_runs", "on_schedule_tick needs aiplatform.pipelineJobs.create"),
    ("on_model_audit_event", "project_roles", "vertex_viewer", "on_model_audit_event needs aiplatform.models.get"),
    ("registry_api", "project_roles", "scheduler_jobs", "registry_api needs cloudscheduler.jobs.create"),
])
def test_a_removed_grant_is_reported(tf, ep, field, label, words):
    broken = copy.deepcopy(tf)
    del access(broken, ep)[field][label]
    assert any(words in p for p in check_grants(broken)), check_grants(broken)


def test_a_removed_topic_is_reported(tf):
    broken = copy.deepcopy(tf)
    access(broken, "registry_api")["publish"] = ["schedule-ticks"]
    assert check_grants(broken) == ["registry_api needs pubsub.topics.publish on the topic deploy-requests, which "
                                    "nothing granted to it gives"]


@pytest.mark.parametrize(("ep", "field", "label", "value", "words"), [
    ("on_model_audit_event", "project_roles", "run_viewer", "roles/run.viewer", "holds roles/run.viewer"),
    ("on_reconcile_tick", "project_roles", "scheduler", "roles/cloudscheduler.viewer",
     "holds roles/cloudscheduler.viewer"),
    # covered already by the custom role: redundant
    ("on_deploy_request", "project_roles", "vertex_viewer", "roles/aiplatform.viewer", "holds roles/aiplatform.viewer"),
    ("on_model_audit_event", "read_buckets", "artifacts", "${google_storage_bucket.artifacts.name}",
     "holds roles/storage.objectViewer on the bucket"),
    ("on_pipeline_event", "act_as", "serving", "${google_service_account.serving.name}",
     "holds roles/iam.serviceAccountUser on the service account"),
    # broader than needed: run.admin can change IAM policies
    ("on_deploy_request", "project_roles", "run_developer", "roles/run.admin", "holds roles/run.admin, which the test "
                                                                                 "does not know"),
])
def test_an_unneeded_grant_is_reported(tf, ep, field, label, value, words):
    broken = copy.deepcopy(tf)
    access(broken, ep)[field][label] = value
    assert any(words in p for p in check_grants(broken)), check_grants(broken)


def test_an_extra_topic_and_an_extra_custom_permission_are_reported(tf):
    broken = copy.deepcopy(tf)
    access(broken, "on_reconcile_tick")["publish"] = ["deploy-requests"]
    registrar_role = broken["root"]["resource"][("google_project_iam_custom_role", "model_registrar")]
    registrar_role["permissions"] = [*registrar_role["permissions"], "aiplatform.models.delete"]
    problems = check_grants(broken)
    assert any("on_reconcile_tick holds roles/pubsub.publisher on the topic deploy-requests" in p for p in problems)
    assert any("custom role model_registrar with ['aiplatform.models.delete']" in p for p in problems)


def test_a_call_added_to_a_wiring_needs_its_grant(tf):
    wirings = dict(bootstrap.WIRING)
    plan = wirings["on_model_audit_event"]
    wirings["on_model_audit_event"] = Wiring(plan.calls | {ServingPlatform.list_services}, plan.publishes)
    assert check_grants(tf, wirings) == ["on_model_audit_event needs run.services.list on the project, which nothing "
                                         "granted to it gives"]


def test_a_function_deployed_without_a_wiring_is_reported(tf):
    wirings = {k: v for k, v in bootstrap.WIRING.items() if k != "on_reconcile_tick"}
    assert "on_reconcile_tick is deployed without a wiring" in check_grants(tf, wirings)


# ----------------------------------------------------------------------------------------------------------
# Timeouts cover the operations a function waits for
# ----------------------------------------------------------------------------------------------------------


def function_timeouts(tf: dict) -> dict[str, int]:
    local = tf["root"]["locals"]
    timeouts = {t["consumer"]["entry_point"]: local.get("function_timeouts", {}).get(t["consumer"]["entry_point"], 300)
                for t in topology(tf)["topics"] if t.get("consumer")}
    http = tf["root"]["resource"][("google_cloudfunctions2_function", "http")]["service_config"][0]["timeout_seconds"]
    timeouts.update({f["entry_point"]: http for f in topology(tf).get("http_functions", [])})
    return timeouts


def check_timeouts(tf: dict, wirings: dict[str, Wiring] | None = None) -> list[str]:
    wirings = bootstrap.WIRING if wirings is None else wirings
    config = terraform_config(tf)
    adapters = {attr: build(config) for attr, build in bootstrap.ADAPTERS.items()}
    problems = []
    for ep, timeout in function_timeouts(tf).items():
        waits = {}
        for call in wirings[ep].calls:
            adapter = adapters[wiring.PORTS[wirings[ep].port_of(call)]]
            if call.__name__ in permissions.WAITS.get(type(adapter).__name__, ()):
                waits[call.__qualname__] = adapter.lro_timeout
        longest_call, longest = min(waits.items(), key=lambda item: (-item[1], item[0]), default=(None, 0))
        if longest and timeout < longest + WAIT_MARGIN:
            problems.append(f"{ep} may run {timeout}s, but waits up to {longest:.0f}s for {longest_call} (and needs "
                            f"{WAIT_MARGIN}s for the rest)")
        if ep != "registry_api" and timeout > EVENT_FUNCTION_MAX_TIMEOUT:
            problems.append(f"{ep}'s timeout {timeout}s is over the {EVENT_FUNCTION_MAX_TIMEOUT}s an event-driven "
                            "function may run")
    return problems


def test_function_timeouts_cover_the_operations_they_wait_for(tf):
    assert check_timeouts(tf) == []
    waits = function_timeouts(tf)
    assert waits["on_deploy_request"] == waits["on_pipeline_event"] == EVENT_FUNCTION_MAX_TIMEOUT


def test_a_timeout_shorter_than_a_wait_is_reported(tf):
    broken = copy.deepcopy(tf)
    broken["root"]["locals"]["function_timeouts"].pop("on_deploy_request")  # back to the module's 300 s
    assert check_timeouts(broken) == ["on_deploy_request may run 300s, but waits up to 420s for "
                                      "ModelRegistryWriter.upload_version (and needs 60s for the rest)"]
    broken["root"]["locals"]["function_timeouts"]["on_deploy_request"] = 600
    assert check_timeouts(broken) == ["on_deploy_request's timeout 600s is over the 540s an event-driven function "
                                      "may run"]


# ----------------------------------------------------------------------------------------------------------
# Customer-managed keys: every service that encrypts with var.kms_key_name may use it
# ----------------------------------------------------------------------------------------------------------


# Whose service agent encrypts a resource of each type with the key, as keyed in the grants' map.
KEY_USERS = {
    "google_pubsub_topic": "pubsub",
    "google_storage_bucket": "storage",
    "google_artifact_registry_repository": "artifact_registry",
    "google_firestore_database": "firestore",
    "google_vertex_ai_index": "aiplatform",
    "google_vertex_ai_endpoint": "aiplatform",
    "google_cloudfunctions2_function": "cloudfunctions",
}
KMS_GRANTS = ("google_kms_crypto_key_iam_member", "service_agents")


def check_key_grants(tf: dict) -> list[str]:
    problems = []
    resources = tf["root"]["resource"]
    grant = resources.get(KMS_GRANTS, {})
    granted_to = set(re.findall(r"(\w+) = \"serviceAccount:", str(grant.get("for_each", ""))))
    if grant and (grant.get("crypto_key_id"), grant.get("role")) != ("${var.kms_key_name}",
                                                                     "roles/cloudkms.cryptoKeyEncrypterDecrypter"):
        problems.append("the service agents are not granted encrypt/decrypt on var.kms_key_name")
    if grant and "var.kms_key_name == null ? {}" not in str(grant.get("for_each")):
        problems.append("the key grants are made without a key")
    for (rtype, name), body in resources.items():
        if "var.kms_key_name" not in str({k: v for k, v in body.items() if k != "depends_on"}):
            continue
        user = KEY_USERS.get(rtype)
        if rtype == "google_kms_crypto_key_iam_member":
            continue
        if user is None:
            problems.append(f"{rtype}.{name} uses var.kms_key_name: teach the test whose service agent encrypts it")
        elif user not in granted_to:
            problems.append(f"{rtype}.{name} is encrypted with var.kms_key_name, but the {user} service agent is not "
                            "granted encrypt/decrypt on it")
        elif "${google_kms_crypto_key_iam_member.service_agents}" not in (body.get("depends_on") or []):
            problems.append(f"{rtype}.{name} may be created before its service agent may use the key")
    for user in sorted(granted_to - {KEY_USERS.get(rtype) for (rtype, _), body in resources.items()
                                     if "var.kms_key_name" in str(body) and rtype != KMS_GRANTS[0]}):
        problems.append(f"the {user} service agent is granted the key, but nothing it keeps is encrypted with it")
    return problems


def test_every_resource_encrypted_with_the_key_has_its_service_agent_granted(tf):
    assert check_key_grants(tf) == []
    keyed = {rtype for (rtype, _), body in tf["root"]["resource"].items()
             if "var.kms_key_name" in str(body) and rtype != KMS_GRANTS[0]}
    assert keyed == {"google_pubsub_topic", "google_storage_bucket", "google_artifact_registry_repository"}


def test_a_missing_or_needless_key_grant_is_reported(tf):
    broken = copy.deepcopy(tf)
    grant = broken["root"]["resource"][KMS_GRANTS]
    grant["for_each"] = grant["for_each"].replace("storage = ", "storage_agent_removed = ")
    problems = check_key_grants(broken)
    assert any("google_storage_bucket.artifacts is encrypted with var.kms_key_name, but the storage" in p
               for p in problems)
    broken = copy.deepcopy(tf)
    database = broken["root"]["resource"][("google_firestore_database", "main")]
    database["cmek_config"] = [{"kms_key_name": "${var.kms_key_name}"}]
    assert any("google_firestore_database.main is encrypted" in p and "firestore service agent" in p
               for p in check_key_grants(broken))
    broken = copy.deepcopy(tf)
    del broken["root"]["resource"][("google_artifact_registry_repository", "serving")]["depends_on"]
    assert any("may be created before" in p for p in check_key_grants(broken))
