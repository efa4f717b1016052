"""Terraform agrees with the code: parsed HCL (python-hcl2) against schemas/topology.json and functions/main.py.

No provider is needed: the test reads the .tf files, works out which topics, subscriptions and functions
their `for_each` expressions produce from the topology, and compares that with what the code uses.
Each check is a function returning a list of problems, so the tests at the bottom can feed it a modified
topology, main.py or Terraform and show that it reports the gap.
"""

from __future__ import annotations

import ast
import copy
import json
import re
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

ROOT = Path(__file__).resolve().parents[2]
TF_ROOT = ROOT / "terraform"
TOPOLOGY_FILE = ROOT / "schemas" / "topology.json"
MAIN_PY = ROOT / "functions" / "main.py"
DECODE_PY = ROOT / "functions" / "registrar" / "registry" / "decode.py"
MODULE_DIRS = [
    TF_ROOT,
    *sorted(p for p in (TF_ROOT / "modules").iterdir() if p.is_dir()),
    *sorted(p for p in (TF_ROOT / "examples").iterdir() if p.is_dir()),
]

PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")

# How the root module derives its for_each maps from the topology. The test evaluates these in Python
# (topology_view below); if an expression changes, the test must be taught the new meaning.
TOPOLOGY_SOURCE = '${jsondecode(file(coalesce(var.topology_file, "${path.module}/../schemas/topology.json")))}'
DERIVATIONS = {
    "topics": "${{for t in local.topology.topics : t.name => t}}",
    "input_topics": "${{for t in local.topology.topics : t.name => t if t.dead_letter_topic != null}}",
    "consumers": "${{for t in local.topology.topics : t.consumer.entry_point => merge(t.consumer, {topic = t.name}) if t.consumer != null}}",
    "http_functions": "${{for f in local.topology.http_functions : f.entry_point => f}}",
}


# ----------------------------------------------------------------------------------------------------------
# Reading the code
# ----------------------------------------------------------------------------------------------------------


def entry_points(source: str) -> dict[str, str]:
    """Top-level functions of main.py decorated by functions_framework: name => "cloud_event" | "http"."""
    found = {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for decorator in node.decorator_list:
            target = decorator.func if isinstance(decorator, ast.Call) else decorator
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
            if name in ("cloud_event", "http"):
                found[node.name] = name
    return found


def handled_audit_methods(source: str) -> set[str]:
    """Full ModelService method names the audit decoder accepts (namespaces x SUPPORTED_METHODS)."""
    constants = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            constants[node.targets[0].id] = node.value
    methods = ast.literal_eval(constants["SUPPORTED_METHODS"])
    pattern_call = constants["AUDIT_METHOD_RE"]
    pattern = ast.literal_eval(pattern_call.args[0])
    namespaces = re.search(r"aiplatform\\\.\(([^)]*)\)", pattern).group(1).split("|")
    return {f"google.cloud.aiplatform.{ns}.ModelService.{m}" for ns in namespaces for m in methods}


def load_hcl_text(text: str) -> dict:
    options = SerializationOptions(
        strip_string_quotes=True, preserve_heredocs=False, with_comments=False, explicit_blocks=False
    )
    return hcl2.loads(text, serialization_options=options)


def load_module(directory: Path) -> dict:
    """All .tf files of one module: {"resource": {(type, name): body}, "module": {...}, "locals": {...}, ...}."""
    model = {"resource": {}, "data": {}, "module": {}, "locals": {}, "variable": {}, "output": {}, "terraform": []}
    for path in sorted(directory.glob("*.tf")):
        parsed = load_hcl_text(path.read_text())
        for block in parsed.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    model["resource"][(rtype, name)] = body
        for block in parsed.get("data", []):
            for dtype, named in block.items():
                for name, body in named.items():
                    model["data"][(dtype, name)] = body
        for kind in ("module", "variable", "output"):
            for block in parsed.get(kind, []):
                model[kind].update(block)
        for block in parsed.get("locals", []):
            model["locals"].update(block)
        model["terraform"].extend(parsed.get("terraform", []))
    return model


def load_terraform(root: Path = TF_ROOT) -> dict:
    return {
        "root": load_module(root),
        "event_function": load_module(root / "modules" / "event_function"),
        "scheduled_trigger": load_module(root / "modules" / "scheduled_trigger"),
        "examples": {p.name: load_module(p) for p in sorted((root / "examples").iterdir()) if p.is_dir()},
    }


def all_modules(tf: dict) -> dict[str, dict]:
    modules = {"root": tf["root"], "event_function": tf["event_function"], "scheduled_trigger": tf["scheduled_trigger"]}
    modules.update({f"examples/{name}": m for name, m in tf["examples"].items()})
    return modules


# ----------------------------------------------------------------------------------------------------------
# Evaluating the for_each derivations
# ----------------------------------------------------------------------------------------------------------


class Unresolvable(Exception):
    pass


def norm(expr) -> str:
    return re.sub(r"\s+", " ", str(expr)).strip()


def resolve(expr, key: str, value: dict):
    """Value of a simple attribute expression for one for_each instance.

    Understands literals, ${each.key}, ${each.value.FIELD} and ${RESOURCE[each.value.FIELD].ATTR}
    (returned as (RESOURCE, key, ATTR)); anything else is Unresolvable, so a change in shape is noticed.
    """
    if not isinstance(expr, str) or "${" not in expr:
        return expr
    if expr == "${each.key}":
        return key
    m = re.fullmatch(r"\$\{each\.value\.(\w+)\}", expr)
    if m:
        return value.get(m.group(1))
    m = re.fullmatch(r"\$\{([\w.]+)\[each\.(?:value\.(\w+)|key)\]\.(\w+)\}", expr)
    if m:
        return (m.group(1), value.get(m.group(2)) if m.group(2) else key, m.group(3))
    raise Unresolvable(expr)


def topology_view(tf: dict, topology: dict, topology_path: Path = TOPOLOGY_FILE) -> tuple[dict, list[str]]:
    """The maps the root module's locals build from the topology, or problems if they are not built from it."""
    problems = []
    local = tf["root"]["locals"]
    if norm(local.get("topology")) != norm(TOPOLOGY_SOURCE):
        problems.append(f"local.topology is not read from the topology file: {local.get('topology')!r}")
    elif (TF_ROOT / ".." / "schemas" / "topology.json").resolve() != topology_path.resolve():
        problems.append("local.topology points at a different file than the code's schemas/topology.json")
    for name, expected in DERIVATIONS.items():
        if norm(local.get(name)) != norm(expected):
            problems.append(f"local.{name} is not the derivation the test understands: {local.get(name)!r}")
    topics = topology["topics"]
    view = {
        "topics": {t["name"]: t for t in topics},
        "input_topics": {t["name"]: t for t in topics if t.get("dead_letter_topic") is not None},
        "consumers": {
            t["consumer"]["entry_point"]: {**t["consumer"], "topic": t["name"]}
            for t in topics
            if t.get("consumer") is not None
        },
        "http_functions": {f["entry_point"]: f for f in topology.get("http_functions", [])},
    }
    return view, problems


def instances(body: dict, view: dict) -> dict[str, dict]:
    """for_each instances of a block whose for_each is one of the topology-derived locals."""
    m = re.fullmatch(r"\$\{local\.(\w+)\}", str(body.get("for_each")))
    if not m or m.group(1) not in view:
        raise Unresolvable(f"for_each {body.get('for_each')!r}")
    return view[m.group(1)]


def planned(tf: dict, topology: dict, topology_path: Path = TOPOLOGY_FILE) -> tuple[dict, list[str]]:
    """What Terraform creates from the topology: topics, dead-letter topics/subscriptions, functions."""
    view, problems = topology_view(tf, topology, topology_path)
    res = tf["root"]["resource"]
    plan = {
        "topics": set(),
        "dead_letter_topics": {},
        "dead_letter_subscriptions": {},
        "event_functions": {},
        "http_functions": {},
    }
    try:
        body = res[("google_pubsub_topic", "topic")]
        for key, value in instances(body, view).items():
            plan["topics"].add(resolve(body["name"], key, value))
        body = res[("google_pubsub_topic", "dead_letter")]
        for key, value in instances(body, view).items():
            plan["dead_letter_topics"][key] = resolve(body["name"], key, value)
        body = res[("google_pubsub_subscription", "dead_letter")]
        for key, value in instances(body, view).items():
            topic_ref = resolve(body["topic"], key, value)
            topic = (
                plan["dead_letter_topics"].get(topic_ref[1])
                if topic_ref[0] == "google_pubsub_topic.dead_letter"
                else None
            )
            plan["dead_letter_subscriptions"][resolve(body["name"], key, value)] = topic
        body = tf["root"]["module"]["event_function"]
        for key, value in instances(body, view).items():
            topic_ref = resolve(body["topic_id"], key, value)
            dlq_ref = resolve(body["dead_letter_topic_id"], key, value)
            plan["event_functions"][key] = {
                "entry_point": resolve(body["entry_point"], key, value),
                "topic": topic_ref[1] if topic_ref[0] == "google_pubsub_topic.topic" else None,
                "subscription": resolve(body["subscription_name"], key, value),
                "dead_letter_topic": (
                    plan["dead_letter_topics"].get(dlq_ref[1])
                    if dlq_ref[0] == "google_pubsub_topic.dead_letter"
                    else None
                ),
                "max_delivery_attempts": resolve(body["max_delivery_attempts"], key, value),
                "delivery": body.get("delivery", tf["event_function"]["variable"]["delivery"].get("default")),
                "name": value["entry_point"].replace("_", "-"),
            }
        body = res[("google_cloudfunctions2_function", "http")]
        for key, value in instances(body, view).items():
            build = body["build_config"][0] if isinstance(body["build_config"], list) else body["build_config"]
            plan["http_functions"][key] = {
                "entry_point": resolve(build["entry_point"], key, value),
                "has_event_trigger": "event_trigger" in body,
                "name": key.replace("_", "-"),
            }
    except (KeyError, Unresolvable, TypeError) as exc:
        problems.append(f"cannot follow the topology through Terraform: {exc!r}")
    return plan, problems


def block(body: dict, name: str) -> dict | None:
    value = body.get(name)
    if isinstance(value, list):
        return value[0] if value else None
    return value


# ----------------------------------------------------------------------------------------------------------
# The checks
# ----------------------------------------------------------------------------------------------------------


def check_topics(tf: dict, topology: dict, topology_path: Path = TOPOLOGY_FILE) -> list[str]:
    """Every topic, dead-letter topic, dead-letter subscription and consumer subscription exists."""
    plan, problems = planned(tf, topology, topology_path)
    for t in topology["topics"]:
        if t["name"] not in plan["topics"]:
            problems.append(f"topic {t['name']} is not declared")
        if t.get("dead_letter_topic") and t["dead_letter_topic"] not in plan["dead_letter_topics"].values():
            problems.append(f"dead-letter topic {t['dead_letter_topic']} is not declared")
        if t.get("dead_letter_subscription"):
            sub_topic = plan["dead_letter_subscriptions"].get(t["dead_letter_subscription"], "<missing>")
            if sub_topic != t.get("dead_letter_topic"):
                problems.append(
                    f"dead-letter subscription {t['dead_letter_subscription']} is not declared on "
                    f"{t.get('dead_letter_topic')} (found on {sub_topic})"
                )
        consumer = t.get("consumer")
        if consumer:
            fn = plan["event_functions"].get(consumer["entry_point"])
            if fn is None or fn["subscription"] != consumer["subscription"] or fn["topic"] != t["name"]:
                problems.append(f"subscription {consumer['subscription']} on {t['name']} is not declared")
    # Topics named literally in Terraform (sinks, schedules, grants) must be topology topics.
    names = {t["name"] for t in topology["topics"]}
    text = "\n".join(p.read_text() for d in MODULE_DIRS for p in d.glob("*.tf"))
    for literal in set(re.findall(r'google_pubsub_topic\.topic\["([^"]+)"\]', text)):
        if literal not in names:
            problems.append(f"Terraform refers to topic {literal}, which the topology does not have")
    local = tf["root"]["locals"]
    for sink in local.get("log_sinks", {}).values():
        if sink["topic"] not in names:
            problems.append(f"a log sink writes to {sink['topic']}, which the topology does not have")
    for ep, access in local.get("function_access", {}).items():
        for topic in access.get("publish", []):
            if topic not in names:
                problems.append(f"{ep} publishes to {topic}, which the topology does not have")
    if local.get("events_topic") not in names:
        problems.append(f"events topic {local.get('events_topic')} is not in the topology")
    return problems


def check_entry_points(tf: dict, topology: dict, main_source: str) -> list[str]:
    """Every entry point is deployed with the trigger the topology names, and nothing else is deployed."""
    plan, problems = planned(tf, topology)
    code = entry_points(main_source)
    consumers = {t["consumer"]["entry_point"]: t for t in topology["topics"] if t.get("consumer")}
    http = {f["entry_point"] for f in topology.get("http_functions", [])}
    for ep, kind in code.items():
        if kind == "cloud_event":
            if ep not in consumers:
                problems.append(f"event entry point {ep} in main.py has no consumer in the topology")
                continue
            fn = plan["event_functions"].get(ep)
            topic = consumers[ep]
            if fn is None:
                problems.append(f"event entry point {ep} is not deployed")
            elif fn["topic"] != topic["name"] or fn["subscription"] != topic["consumer"]["subscription"]:
                problems.append(
                    f"{ep} is triggered by {fn['topic']}/{fn['subscription']}, the topology says "
                    f"{topic['name']}/{topic['consumer']['subscription']}"
                )
        else:
            if ep not in http:
                problems.append(f"HTTP entry point {ep} in main.py is not an http_function of the topology")
            elif ep not in plan["http_functions"]:
                problems.append(f"HTTP entry point {ep} is not deployed")
    module_fn = tf["event_function"]["resource"].get(("google_cloudfunctions2_function", "main"), {})
    if (block(module_fn, "build_config") or {}).get("entry_point") != "${var.entry_point}":
        problems.append("the event function module does not run var.entry_point")
    push = tf["event_function"]["resource"].get(("google_pubsub_subscription", "push"), {})
    if (block(push, "push_config") or {}).get(
        "push_endpoint"
    ) != "${google_cloudfunctions2_function.main.service_config[0].uri}":
        problems.append("the consumer subscription does not push to its own function")
    for ep, fn in plan["event_functions"].items():
        if code.get(ep) != "cloud_event":
            problems.append(f"Terraform deploys event function {ep}, but main.py has no @cloud_event {ep}")
        if fn["entry_point"] != ep:
            problems.append(f"function for {ep} runs entry point {fn['entry_point']}")
    for ep, fn in plan["http_functions"].items():
        if code.get(ep) != "http":
            problems.append(f"Terraform deploys HTTP function {ep}, but main.py has no @http {ep}")
        if fn["has_event_trigger"] or fn["entry_point"] != ep:
            problems.append(f"HTTP function {ep} is not a plain HTTP function running {ep}")
    return problems


def check_service_accounts(tf: dict, topology: dict) -> list[str]:
    """Every function runs as its own service account."""
    plan, problems = planned(tf, topology)
    module = tf["event_function"]
    function = module["resource"].get(("google_cloudfunctions2_function", "main"), {})
    if (
        block(
            function,
            "service_config",
        ).get("service_account_email")
        != "${google_service_account.function.email}"
    ):
        problems.append("event functions do not run as the module's own google_service_account.function")
    if norm(module["locals"].get("function_account_id")) != norm('${trimsuffix(substr("fn-${var.name}", 0, 30), "-")}'):
        problems.append("the event function account id is no longer fn-<name>; teach the test the new rule")
    http = tf["root"]["resource"]
    if http.get(("google_service_account", "http_function"), {}).get("for_each") != "${local.http_functions}":
        problems.append("HTTP functions do not get one service account each")
    http_fn = http.get(("google_cloudfunctions2_function", "http"), {})
    if (
        block(http_fn, "service_config").get("service_account_email")
        != "${google_service_account.http_function[each.key].email}"
    ):
        problems.append("HTTP functions do not run as their own service account")
    account_ids = [
        f"fn-{fn['name']}"[:30].rstrip("-")
        for fn in [*plan["event_functions"].values(), *plan["http_functions"].values()]
    ]
    for account_id in account_ids:
        if account_ids.count(account_id) > 1:
            problems.append(f"service account id {account_id} is shared by more than one function")
        if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", account_id):
            problems.append(f"service account id {account_id} is not a valid account id")
    basic = {
        "roles/owner",
        "roles/editor",
        "roles/viewer",
        "roles/iam.serviceAccountUser",
        "roles/iam.serviceAccountTokenCreator",
    }
    for ep, access in tf["root"]["locals"].get("function_access", {}).items():
        wide = basic & set(access.get("project_roles", {}).values())
        if wide:
            problems.append(f"{ep} holds {sorted(wide)} on the whole project")
    shared = {("google_service_account", n) for n in ("build", "serving", "pipeline")}
    for key in shared:
        if key not in tf["root"]["resource"]:
            problems.append(f"{key[0]}.{key[1]} is missing")
    return sorted(set(problems))


def iam_members(body) -> list[str]:
    found = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key in ("member", "members") or key == "for_each":
                found.append(json.dumps(value))
            else:
                found.extend(iam_members(value))
    elif isinstance(body, list):
        for item in body:
            found.extend(iam_members(item))
    return found


def check_no_public_access(tf: dict, tfvars_texts: dict[str, str]) -> list[str]:
    """No IAM binding, member list or example variable grants allUsers / allAuthenticatedUsers."""
    problems = []
    for module_name, module in all_modules(tf).items():
        for (rtype, name), body in module["resource"].items():
            if "_iam_" not in rtype:
                continue
            for member in iam_members(body):
                if any(p in member for p in PUBLIC_MEMBERS):
                    problems.append(f"{module_name}: {rtype}.{name} grants {member}")
        for name, body in module["variable"].items():
            if any(p in json.dumps(body.get("default")) for p in PUBLIC_MEMBERS):
                problems.append(f"{module_name}: variable {name} defaults to a public member")
    for name, text in tfvars_texts.items():
        if any(p in text for p in PUBLIC_MEMBERS):
            problems.append(f"{name} names a public member")
    invokers = tf["root"]["variable"].get("api_invokers", {})
    if not any("allUsers" in json.dumps(v) for v in invokers.get("validation", [])):
        problems.append("variable api_invokers does not reject allUsers")
    return problems


def check_dead_letter_policies(tf: dict, topology: dict) -> list[str]:
    """Every subscription has a dead-letter policy; dead-letter subscriptions are the end of the line."""
    plan, problems = planned(tf, topology)
    for module_name, module in all_modules(tf).items():
        for (rtype, name), body in module["resource"].items():
            if rtype != "google_pubsub_subscription":
                continue
            policy = block(body, "dead_letter_policy")
            on_dead_letter_topic = str(body.get("topic", "")).startswith("${google_pubsub_topic.dead_letter[")
            if policy:
                if not policy.get("dead_letter_topic") or not policy.get("max_delivery_attempts"):
                    problems.append(f"{module_name}: subscription {name} has an incomplete dead-letter policy")
                if not block(body, "retry_policy"):
                    problems.append(f"{module_name}: subscription {name} has no retry policy")
            elif not on_dead_letter_topic:
                problems.append(f"{module_name}: subscription {name} has no dead-letter policy")
    push = tf["event_function"]["resource"].get(("google_pubsub_subscription", "push"), {})
    policy = block(push, "dead_letter_policy") or {}
    if (push.get("name"), push.get("topic"), policy.get("dead_letter_topic"), policy.get("max_delivery_attempts")) != (
        "${var.subscription_name}",
        "${var.topic_id}",
        "${var.dead_letter_topic_id}",
        "${var.max_delivery_attempts}",
    ):
        problems.append("the event function's push subscription does not use the topology's names and limits")
    for ep, fn in plan["event_functions"].items():
        topic = next(t for t in topology["topics"] if t.get("consumer") and t["consumer"]["entry_point"] == ep)
        if fn["delivery"] != "push_subscription":
            problems.append(f"{ep} is delivered by {fn['delivery']}: its subscription has no dead-letter policy")
        if fn["dead_letter_topic"] != topic.get("dead_letter_topic") or not topic.get("dead_letter_topic"):
            problems.append(f"{ep} does not dead-letter to {topic.get('dead_letter_topic')}")
        if fn["max_delivery_attempts"] != topic["consumer"]["max_delivery_attempts"]:
            problems.append(f"{ep} does not use the topology's max_delivery_attempts")
    root = tf["root"]["resource"]
    grant = root.get(("google_pubsub_topic_iam_member", "dead_letter_publisher"), {})
    if grant.get("for_each") != "${local.input_topics}" or "pubsub" not in str(grant.get("member")):
        problems.append("the Pub/Sub service agent cannot publish to every dead-letter topic")
    if ("google_pubsub_subscription_iam_member", "service_agent_subscriber") not in tf["event_function"]["resource"]:
        problems.append("the Pub/Sub service agent cannot acknowledge on the consumer subscriptions")
    return problems


def filter_methods(filter_text: str) -> set[str]:
    return set(re.findall(r'"(google\.cloud\.aiplatform\.[\w.]+)"', filter_text.replace('\\"', '"')))


def check_log_sinks(tf: dict, handled: set[str]) -> list[str]:
    """Sinks: the audit filter names exactly the handled methods; unique writers publish on their own topic."""
    problems = []
    local = tf["root"]["locals"]
    sinks = local.get("log_sinks", {})
    resource = tf["root"]["resource"]
    sink = resource.get(("google_logging_project_sink", "main"), {})
    if sink.get("for_each") != "${local.log_sinks}" or sink.get("unique_writer_identity") is not True:
        problems.append("log sinks are not one per local.log_sinks with unique writer identities")
    if sink.get("filter") != "${each.value.filter}":
        problems.append("log sink filters are not taken from local.log_sinks")
    writer = resource.get(("google_pubsub_topic_iam_member", "sink_writer"), {})
    if (writer.get("for_each"), writer.get("topic"), writer.get("member"), writer.get("role")) != (
        "${local.log_sinks}",
        "${google_pubsub_topic.topic[each.value.topic].name}",
        "${google_logging_project_sink.main[each.key].writer_identity}",
        "roles/pubsub.publisher",
    ):
        problems.append("sink writer identities are not granted publish on exactly their own topic")
    by_topic = {}
    for value in sinks.values():
        m = re.fullmatch(r"\$\{local\.(\w+)\}", str(value.get("filter")))
        by_topic[value["topic"]] = str(local.get(m.group(1)) if m else value.get("filter")).replace('\\"', '"')
    audit = by_topic.get("model-audit-events", "")
    named = filter_methods(audit)
    if named != handled:
        problems.append(
            f"audit sink filter names {sorted(named - handled)} the handler does not understand and "
            f"misses {sorted(handled - named)}"
        )
    for clause in (
        'logName:"cloudaudit.googleapis.com%2Factivity"',
        'protoPayload.serviceName="aiplatform.googleapis.com"',
    ):
        if clause not in audit:
            problems.append(f"audit sink filter lacks {clause}")
    pipeline = by_topic.get("pipeline-events", "")
    for clause in (
        'resource.type="aiplatform.googleapis.com/PipelineJob"',
        'jsonPayload."@type"="type.googleapis.com/google.cloud.aiplatform.logging.PipelineJobLogEntry"',
        "jsonPayload.state",
    ):
        if clause not in pipeline:
            problems.append(f"pipeline sink filter lacks {clause}")
    return problems


def check_provider_versions(tf: dict) -> list[str]:
    problems = []
    for module_name, module in all_modules(tf).items():
        blocks = [b for t in module["terraform"] for b in (t.get("required_providers") or [])]
        if not blocks:
            problems.append(f"{module_name}: no required_providers")
        for providers in blocks:
            for name, spec in providers.items():
                version = str(spec.get("version", "")) if isinstance(spec, dict) else ""
                if not (re.search(r">=?\s*\d", version) and re.search(r"<\s*\d", version)):
                    problems.append(f"{module_name}: provider {name} version {version!r} is not bounded")
    return problems


def check_variables(tf: dict) -> list[str]:
    problems = []
    for module_name, module in all_modules(tf).items():
        for name, body in module["variable"].items():
            if not body.get("type"):
                problems.append(f"{module_name}: variable {name} has no type")
            if not str(body.get("description", "")).strip():
                problems.append(f"{module_name}: variable {name} has no description")
        for name, body in module["output"].items():
            if not str(body.get("description", "")).strip():
                problems.append(f"{module_name}: output {name} has no description")
    return problems


# ----------------------------------------------------------------------------------------------------------
# Tests against the real files
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf() -> dict:
    return load_terraform()


@pytest.fixture(scope="module")
def topology() -> dict:
    return json.loads(TOPOLOGY_FILE.read_text())


@pytest.fixture(scope="module")
def main_source() -> str:
    if not MAIN_PY.exists():
        pytest.fail("functions/main.py does not exist: nothing to compare the deployed functions with")
    return MAIN_PY.read_text()


def test_every_topology_topic_and_subscription_is_declared(tf, topology):
    assert check_topics(tf, topology) == []


def test_every_entry_point_is_deployed_with_the_topology_trigger(tf, topology, main_source):
    assert entry_points(main_source), "no functions_framework entry point found in functions/main.py"
    assert check_entry_points(tf, topology, main_source) == []


def test_every_function_has_its_own_service_account(tf, topology):
    assert check_service_accounts(tf, topology) == []


def test_nothing_is_public(tf):
    tfvars = {str(p.relative_to(ROOT)): p.read_text() for p in TF_ROOT.rglob("*.tfvars*")}
    assert check_no_public_access(tf, tfvars) == []


def test_every_subscription_has_a_dead_letter_policy(tf, topology):
    assert check_dead_letter_policies(tf, topology) == []


def test_sink_filters_name_the_methods_the_handler_understands(tf):
    handled = handled_audit_methods(DECODE_PY.read_text())
    assert handled, "no ModelService methods found in functions/registrar/registry/decode.py"
    assert check_log_sinks(tf, handled) == []


def test_provider_versions_are_bounded(tf):
    assert check_provider_versions(tf) == []


def test_every_variable_is_typed_and_described(tf):
    assert check_variables(tf) == []


def test_event_trigger_option_retries():
    body = load_module(TF_ROOT / "modules" / "event_function")["resource"][("google_cloudfunctions2_function", "main")]
    trigger = json.dumps(body.get("dynamic", body.get("event_trigger")))
    assert "RETRY_POLICY_RETRY" in trigger


def test_reconcile_ticks_are_scheduled(tf):
    job = tf["root"]["module"]["reconcile_tick"]
    assert job["source"] == "./modules/scheduled_trigger"
    assert job["topic_id"] == '${google_pubsub_topic.topic["reconcile-ticks"].id}'
    target = block(tf["scheduled_trigger"]["resource"][("google_cloud_scheduler_job", "main")], "pubsub_target")
    assert target["topic_name"] == "${var.topic_id}" and "jsonencode" in target["data"]


def test_function_source_archive_holds_functions_and_schemas(tf):
    local = tf["root"]["locals"]
    assert '"schemas/${f}"' in json.dumps(local["schema_files"]).replace('\\"', '"')
    archive = tf["root"]["data"][("archive_file", "functions")]
    assert "local.function_files" in json.dumps(archive) and "local.schema_files" in json.dumps(archive)


MODEL_LIST_INDEXES = ('${merge([for sort, orders in local.model_sorts : {for field in local.model_filter_fields : '
                      '"models_${field}_${sort}" => {collection = "models", scope = "COLLECTION", fields = '
                      'concat([[field, field == "search_terms" ? "CONTAINS" : "ASCENDING"]], orders)}}] ...)}')
FIRESTORE_INDEXES = "${merge(local.model_list_indexes, local.other_firestore_indexes)}"


def declared_indexes(local: dict) -> set[tuple]:
    """(collection, scope, ((field, ASCENDING | DESCENDING | CONTAINS), ...)) of every composite index the root
    module declares, with the models list's generated ones worked out as Terraform does."""
    assert local["model_list_indexes"] == MODEL_LIST_INDEXES, "the generated indexes changed: teach the test"
    assert local["firestore_indexes"] == FIRESTORE_INDEXES
    generated = {("models", "COLLECTION", ((field, "CONTAINS" if field == "search_terms" else "ASCENDING"),
                                           *map(tuple, orders)))
                 for orders in local["model_sorts"].values() for field in local["model_filter_fields"]}
    others = {(i["collection"], i["scope"], tuple(map(tuple, i["fields"])))
              for i in local["other_firestore_indexes"].values()}
    return generated | others


def code_query_shapes() -> list[tuple[str, str, tuple, str | None, tuple]]:
    """(collection, scope, equality fields, array-contains field, order) of every query the code can send that
    needs a composite index: the models list and KPIs (queries.query_shapes), a run's history, the event sweep."""
    import sys

    sys.path.insert(0, str(ROOT / "functions"))
    from registrar.registry.queries import query_shapes

    shapes = [("models", "COLLECTION", eq, contains, order) for eq, contains, order in query_shapes()]
    shapes.append(("history", "COLLECTION_GROUP", (), "training_run_ids", (("occurred_at", True),)))
    shapes.append(("history", "COLLECTION_GROUP", ("pending",), None, (("recorded_at", False),)))
    return shapes


def unserved_shapes(indexes: set[tuple], shapes) -> list:
    """Shapes no index serves: a query is served when each of its filter fields has an index of that field (its
    mode) followed by the query's order — one index, or several that Firestore merges."""
    missing = []
    for collection, scope, equalities, contains, order in shapes:
        orders = tuple((field, "DESCENDING" if descending else "ASCENDING") for field, descending in order)
        wanted = [(f, "ASCENDING") for f in equalities] + ([(contains, "CONTAINS")] if contains else [])
        if not all((collection, scope, (w, *orders)) in indexes for w in wanted):
            missing.append((collection, scope, equalities, contains, order))
    return missing


def unused_indexes(indexes: set[tuple], shapes) -> list:
    used = set()
    for collection, scope, equalities, contains, order in shapes:
        orders = tuple((field, "DESCENDING" if descending else "ASCENDING") for field, descending in order)
        used |= {(collection, scope, ((f, "ASCENDING"), *orders)) for f in equalities}
        if contains:
            used.add((collection, scope, ((contains, "CONTAINS"), *orders)))
    return sorted(indexes - used)


def test_every_query_the_code_sends_has_its_indexes_and_no_index_is_unused(tf):
    indexes, shapes = declared_indexes(tf["root"]["locals"]), code_query_shapes()
    assert len(shapes) > 40
    assert unserved_shapes(indexes, shapes) == []
    assert unused_indexes(indexes, shapes) == []


def test_a_missing_or_an_unused_index_is_reported(tf):
    indexes, shapes = declared_indexes(tf["root"]["locals"]), code_query_shapes()
    dropped = next(i for i in indexes if i[0] == "models" and i[2][0] == ("search_terms", "CONTAINS"))
    assert unserved_shapes(indexes - {dropped}, shapes)
    assert unused_indexes(indexes | {("models", "COLLECTION", (("name_lower", "DESCENDING"),))}, shapes)


def test_ttl_and_unindexed_fields(tf):
    local = tf["root"]["locals"]
    assert local["ttl_fields"] == {"idempotency": "expire_at"}
    unindexed = {(f["collection"], f["field"]) for f in local["unindexed_fields"].values()}
    assert {("models", "versions"), ("models", "applied"), ("history", "events"), ("history", "changes")} <= unindexed
    # What single-field indexes serve (a filter or order on one field, or equality filters merged): none of it may
    # be switched off. Composite indexes are not affected by a field's single-field setting.
    single_field = {("models", "is_live"), ("models", "blessed"), ("models", "deployed"), ("models", "idle"),
                    ("history", "occurred_at"), ("training_runs", "calendar_at"), ("quarantine", "received_at"),
                    ("schedules", "status"), ("schedules", "model_name"), ("endpoints", "model_id")}
    assert not unindexed & single_field


# ----------------------------------------------------------------------------------------------------------
# The checks bite: feed them a gap and see it reported
# ----------------------------------------------------------------------------------------------------------

MAIN_WITH_NEW_ENTRY_POINT = """
import functions_framework

@functions_framework.cloud_event
def on_pipeline_event(cloud_event): ...

@functions_framework.cloud_event
def on_model_audit_event(cloud_event): ...

@functions_framework.cloud_event
def on_unlisted_event(cloud_event): ...

@functions_framework.http
def registry_api(request): ...

def helper(): ...
"""


def test_entry_point_parsing():
    assert entry_points(MAIN_WITH_NEW_ENTRY_POINT) == {
        "on_pipeline_event": "cloud_event",
        "on_model_audit_event": "cloud_event",
        "on_unlisted_event": "cloud_event",
        "registry_api": "http",
    }


def test_an_entry_point_without_terraform_is_reported(tf, topology):
    problems = check_entry_points(tf, topology, MAIN_WITH_NEW_ENTRY_POINT)
    assert any("on_unlisted_event" in p for p in problems)


def test_a_consumer_without_code_is_reported(tf, topology):
    changed = copy.deepcopy(topology)
    ticks = next(t for t in changed["topics"] if t["name"] == "reconcile-ticks")
    ticks["consumer"] = {
        "entry_point": "on_reconcile_tick",
        "subscription": "on-reconcile-tick",
        "max_delivery_attempts": 5,
    }
    main = MAIN_WITH_NEW_ENTRY_POINT.replace("on_unlisted_event", "on_pipeline_event_again")
    problems = check_entry_points(tf, changed, main)
    assert any("on_reconcile_tick" in p for p in problems)


def test_terraform_not_following_the_topology_is_reported(tf, topology):
    broken = copy.deepcopy(tf)
    broken["root"]["locals"]["topics"] = '${{"pipeline-events" = {name = "pipeline-events"}}}'
    problems = check_topics(broken, topology)
    assert any("local.topics" in p for p in problems)

    broken = copy.deepcopy(tf)
    del broken["root"]["resource"][("google_pubsub_subscription", "dead_letter")]
    assert any("cannot follow" in p for p in check_topics(broken, topology))


def test_a_topic_terraform_does_not_create_is_reported(tf, topology):
    # A topology Terraform does not read (another file) has a topic Terraform will not create.
    changed = copy.deepcopy(topology)
    changed["topics"].append(
        {
            "name": "new-events",
            "dead_letter_topic": None,
            "consumer": None,
            "dead_letter_subscription": None,
            "payload_schemas": [],
        }
    )
    plan, _ = planned(tf, topology)
    assert "new-events" not in plan["topics"]
    missing = [t["name"] for t in changed["topics"] if t["name"] not in plan["topics"]]
    assert missing == ["new-events"]
    # And Terraform reading a different file than the code's topology is reported.
    assert any("different file" in p for p in check_topics(tf, topology, topology_path=ROOT / "other.json"))


def test_renamed_topic_referenced_by_terraform_is_reported(tf, topology):
    changed = copy.deepcopy(topology)
    next(t for t in changed["topics"] if t["name"] == "reconcile-ticks")["name"] = "reconcile"
    assert any("reconcile-ticks" in p for p in check_topics(tf, changed))


def test_subscription_without_dead_letter_policy_is_reported(tf, topology):
    broken = copy.deepcopy(tf)
    del broken["event_function"]["resource"][("google_pubsub_subscription", "push")]["dead_letter_policy"]
    assert any("no dead-letter policy" in p for p in check_dead_letter_policies(broken, topology))
    broken = copy.deepcopy(tf)
    broken["root"]["module"]["event_function"]["delivery"] = "eventarc"
    assert any("eventarc" in p for p in check_dead_letter_policies(broken, topology))


def test_public_binding_is_reported(tf):
    broken = copy.deepcopy(tf)
    broken["root"]["resource"][("google_cloud_run_v2_service_iam_member", "public")] = {"member": "allUsers"}
    assert check_no_public_access(broken, {}) == [
        'root: google_cloud_run_v2_service_iam_member.public grants "allUsers"'
    ]
    assert check_no_public_access(tf, {"x.tfvars": 'api_invokers = ["allAuthenticatedUsers"]'})


def test_sink_filter_gap_is_reported(tf):
    handled = handled_audit_methods(DECODE_PY.read_text())
    more = handled | {"google.cloud.aiplatform.v1.ModelService.CopyModel"}
    assert any("CopyModel" in p for p in check_log_sinks(tf, more))
    fewer = set(sorted(handled)[1:])
    assert check_log_sinks(tf, fewer)


def test_shared_service_account_is_reported(tf, topology):
    broken = copy.deepcopy(tf)
    fn = broken["event_function"]["resource"][("google_cloudfunctions2_function", "main")]
    block(fn, "service_config")["service_account_email"] = "${var.shared_account}"
    assert check_service_accounts(broken, topology)
    broken = copy.deepcopy(tf)
    broken["root"]["locals"]["function_access"]["on_model_audit_event"]["project_roles"]["all"] = "roles/editor"
    assert check_service_accounts(broken, topology) == [
        "on_model_audit_event holds ['roles/editor'] on the whole project"
    ]


def test_unbounded_provider_and_untyped_variable_are_reported(tf):
    broken = copy.deepcopy(tf)
    broken["root"]["terraform"][0]["required_providers"][0]["google"]["version"] = ">= 6.0"
    broken["root"]["variable"]["project_id"].pop("type")
    assert check_provider_versions(broken) == ["root: provider google version '>= 6.0' is not bounded"]
    assert check_variables(broken) == ["root: variable project_id has no type"]
