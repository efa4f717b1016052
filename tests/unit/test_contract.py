"""The written contract matches the running code.

- every JSON Schema in schemas/ is a valid draft 2020-12 schema;
- the documents a realistic flow writes (through the real bus, on the in-memory store) validate against
  schemas/documents/*.v1.json, and every outbox payload against schemas/events/registry-event.v1.json;
- every API response (Flask test client) validates against its response schema in schemas/openapi.yaml;
- the routes of the API app and the paths in openapi.yaml are the same set.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from pathlib import Path

import pytest
import yaml
from fakes import LOCATION, PROJECT, FakeVertex, RecordingPublisher, at
from helpers import deliver, local_config
from jsonschema import Draft202012Validator, FormatChecker
from pipeline_records import records
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from registrar.adapters.memory import InMemoryStore
from registrar.api.app import create_app
from registrar.bootstrap import ROUTES, bootstrap
from registrar.kernel.http import jsonable
from registrar.kernel.ids import stable_id
from registrar.registration.commands import RecordRegistration, RequestRegistration
from registrar.registration.queries import training_run
from registrar.releases.commands import RequestPromotion, UpdateAccessPolicy, UpdateReleasePolicy, new_promotion_id

from localcloud import auditlog

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
OPENAPI_URI = "https://registrar.dev/schemas/openapi.yaml"
JSON_SCHEMA_DIALECT = "https://json-schema.org/"

DOCUMENT_SCHEMAS = [  # Firestore path pattern → document schema
    (r"^models/[^/]+$", "registered-model"),
    (r"^models/[^/]+/history/[^/]+$", "history-event"),
    (r"^training_runs/[^/]+$", "training-run"),
    (r"^training_runs/[^/]+/history/[^/]+$", "history-event"),
    (r"^idempotency/[^/]+$", "idempotency-record"),
    (r"^quarantine/[^/]+$", "quarantine-entry"),
    (r"^endpoints/[^/]+$", "endpoint"),
    (r"^deployments/[^/]+$", "deployment-request"),
    (r"^promotions/[^/]+$", "promotion"),
    (r"^policy/access$", "access-policy"),
    (r"^policy/access/history/[^/]+$", "history-event"),
]


# ---------------------------------------------------------------------------------------------------------------
# Schemas


def _json_schema_files() -> list[Path]:
    files = []
    for path in sorted(SCHEMAS.rglob("*.json")):
        doc = json.loads(path.read_text())
        if str(doc.get("$schema", "")).startswith(JSON_SCHEMA_DIALECT):
            files.append(path)
    return files


def _openapi() -> dict:
    return yaml.safe_load((SCHEMAS / "openapi.yaml").read_text())


@pytest.fixture(scope="module")
def registry() -> Registry:
    resources = []
    for path in _json_schema_files():
        doc = json.loads(path.read_text())
        resources.append((doc["$id"], Resource.from_contents(doc)))
    resources.append((OPENAPI_URI, Resource.from_contents(_openapi(), default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


def _validator(schema: dict, registry: Registry) -> Draft202012Validator:
    return Draft202012Validator(schema, registry=registry, format_checker=FormatChecker())


def _errors(validator: Draft202012Validator, instance) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(instance)]


def test_schema_files_are_found():
    names = {p.name for p in _json_schema_files()}
    assert {f"{name}.v1.json" for _, name in DOCUMENT_SCHEMAS} <= names
    assert "registry-event.v1.json" in names


@pytest.mark.parametrize("path", _json_schema_files(), ids=lambda p: str(p.relative_to(SCHEMAS)))
def test_every_schema_is_valid_2020_12(path):
    schema = json.loads(path.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith("/" + str(path.relative_to(SCHEMAS)))


def test_openapi_is_3_1_and_its_component_schemas_are_valid():
    spec = _openapi()
    assert spec["openapi"].startswith("3.1")
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for response in spec["components"]["responses"].values():
        Draft202012Validator.check_schema(response["content"]["application/json"]["schema"])


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_references_resolve_from_the_repository():
    """Tools load openapi.yaml from disk: every $ref is local (`#...`) or a path relative to its file that exists,
    never an absolute id only our own registry knows."""
    documents = {path: json.loads(path.read_text()) for path in _json_schema_files()}
    documents[SCHEMAS / "openapi.yaml"] = _openapi()
    for path, document in documents.items():
        for ref in _refs(document):
            target = ref.split("#", 1)[0]
            assert not re.match(r"^[a-z][a-z0-9+.-]*:", target), f"{path.name}: {ref} is absolute"
            if target:
                assert (path.parent / target).resolve().is_file(), f"{path.name}: {ref} names no file"


def test_topology_validates_against_its_schema_if_present(registry):
    topology = json.loads((SCHEMAS / "topology.json").read_text())
    schema_path = (SCHEMAS / topology["$schema"]).resolve()
    if not schema_path.is_file():
        pytest.skip(f"{topology['$schema']} is not written yet")
    schema = json.loads(schema_path.read_text())
    assert not _errors(_validator(schema, registry), topology)


# ---------------------------------------------------------------------------------------------------------------
# A realistic flow through the real bus


class Clock:
    def __init__(self):
        self.ticks = itertools.count()

    def __call__(self):
        return at(600 + next(self.ticks) / 60)


def _envelope(payload, message_id: str) -> dict:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return {"message": {"data": base64.b64encode(data).decode(), "messageId": message_id,
                        "attributes": {"logging.googleapis.com/timestamp": "2026-11-02T09:00:00Z"}},
            "subscription": f"projects/{PROJECT}/subscriptions/on-model-audit-event"}


def _run_event(run_id: str, state: str, minutes: float, **extra) -> dict:
    return {
        "schema": "registrar.pipeline-run-event.v1",
        "event_id": stable_id(f"{run_id}:{state}"),
        "training_run_id": run_id,
        "model_name": "movielens-retrieval",
        "pipeline_job_name": f"projects/{PROJECT}/locations/{LOCATION}/pipelineJobs/{run_id}",
        "state": state,
        "occurred_at": auditlog.rfc3339(at(minutes)),
        **extra,
    }


def _pipeline_log_entry(run_id: str, state: str, minutes: float, error: str | None = None) -> dict:
    ts = auditlog.rfc3339(at(minutes))
    payload = {"@type": "type.googleapis.com/google.cloud.aiplatform.logging.PipelineJobLogEntry",
               "state": state, "pipelineName": "movielens-retrieval"}
    if error:
        payload["error"] = {"code": 9, "message": error}
    return {
        "insertId": stable_id(run_id, state, length=16),
        "logName": f"projects/{PROJECT}/logs/aiplatform.googleapis.com%2Fpipeline_job_events",
        "resource": {"type": "aiplatform.googleapis.com/PipelineJob",
                     "labels": {"pipeline_job_id": run_id, "location": LOCATION,
                                "resource_container": f"projects/{PROJECT}"}},
        "timestamp": ts,
        "receiveTimestamp": ts,
        "severity": "ERROR" if error else "INFO",
        "jsonPayload": payload,
    }


@pytest.fixture(scope="module")
def flow():
    store = InMemoryStore()
    registry = FakeVertex()
    from fakes import FakeServingPlatform

    services = bootstrap(config=local_config(), store=store, publisher=RecordingPublisher(), registry=registry, now=Clock(),
                         sleep=lambda _: None, serving=FakeServingPlatform())
    ids = itertools.count(1)

    def pipeline(payload):
        deliver(services, "on_pipeline_event", _envelope(payload, str(next(ids))))

    def audit(payload):
        deliver(services, "on_model_audit_event", _envelope(payload, str(next(ids))))

    common = {"project": PROJECT, "location": LOCATION}
    # A training run: RUNNING and SUCCEEDED by our own event, SUCCEEDED again by the log sink (twice).
    pipeline(_run_event("run-1", "RUNNING", 0, model_type="retrieval", stage="Trainer"))
    success = _run_event("run-1", "SUCCEEDED", 30, model_type="retrieval", stage="Pusher",
                         metrics={"recall_at_100": 0.41, "loss": 1.7}, blessed=True,
                         retrieval_algorithm="scann",
                         artifacts={"pushed_model_uri": "gs://artifacts/run-1/pushed_model/1/",
                                    "metrics_uri": "gs://artifacts/run-1/training_metrics.json"},
                         **{**records(), "evaluation": {**records()["evaluation"], "blessed": True}})
    pipeline(success)
    pipeline(_pipeline_log_entry("run-1", "PIPELINE_STATE_SUCCEEDED", 30))
    pipeline(_pipeline_log_entry("run-1", "PIPELINE_STATE_SUCCEEDED", 30))
    pipeline(success)
    # A run known only from the log sink, which failed.
    pipeline(_pipeline_log_entry("run-2", "PIPELINE_STATE_FAILED", 45, error="Trainer: OOM"))

    # Model 1001: two uploads (first and last entries of each operation), an alias moved, labels, a delete.
    for version, minutes, labels, aliases in (
        ("1", 35, {"training_run_id": "run-1", "model_type": "retrieval", "blessed": "true"}, []),
        ("2", 50, {"training_run_id": "run-2", "model_type": "retrieval"}, ["candidate"]),
    ):
        op = f"op-1001-{version}"
        registry.add("1001", version, created=at(minutes), display_name="movielens-retrieval", labels=labels,
                     aliases=("default", *aliases) if version == "1" else tuple(aliases),
                     operation=f"{auditlog.model_path(PROJECT, LOCATION, '1001')}/operations/{op}")
        first, last = auditlog.upload_model_entries(
            **common, model_id="1001", version_id=version, display_name="movielens-retrieval",
            artifact_uri=f"gs://artifacts/1001/pushed_model/{version}/", labels=labels, started_at=at(minutes - 1),
            finished_at=at(minutes), operation_id=op, parent_model=version != "1", version_aliases=aliases)
        audit(first)
        audit(last)
        audit(last)  # a duplicate delivery
    audit(auditlog.merge_version_aliases_entry(**common, model_id="1001", version_id="2", aliases=["champion"],
                                               at=at(55), resulting_aliases=["champion", "candidate"]))
    audit(auditlog.merge_version_aliases_entry(**common, model_id="1001", version_id="2", aliases=["-candidate"],
                                               at=at(56), namespace="ui"))
    audit(auditlog.update_model_entry(**common, model_id="1001", version_id="1",
                                      labels={"training_run_id": "run-1", "model_type": "retrieval", "team": "recs"},
                                      at=at(57)))
    audit(auditlog.delete_model_version_entry(**common, model_id="1001", version_id="1", at=at(58),
                                              operation_id="del-1"))

    # Model 2002: uploaded, then deleted as a whole (it stays, with status deleted and its history).
    registry.add("2002", "1", created=at(60), display_name="ranking-dcn", labels={"model_type": "ranking"})
    _, last = auditlog.upload_model_entries(
        **common, model_id="2002", version_id="1", display_name="ranking-dcn",
        artifact_uri="gs://artifacts/2002/pushed_model/1/", labels={"model_type": "ranking"},
        started_at=at(59), finished_at=at(60), operation_id="op-2002-1", parent_model=False, namespace="v1beta1")
    audit(last)
    audit(auditlog.delete_model_entry(**common, model_id="2002", at=at(61), operation_id="del-2002"))

    # Model 3003: a version deleted before its upload arrives (tombstone), then the late upload.
    registry.add("3003", "1", created=at(62), display_name="multitask", labels={"model_type": "multitask"})
    audit(auditlog.delete_model_version_entry(**common, model_id="3003", version_id="1", at=at(63),
                                              operation_id="del-3003"))
    _, last = auditlog.upload_model_entries(
        **common, model_id="3003", version_id="1", display_name="multitask",
        artifact_uri="gs://artifacts/3003/pushed_model/1/", labels={"model_type": "multitask"},
        started_at=at(61), finished_at=at(62), operation_id="op-3003-1", parent_model=False)
    audit(last)

    # Model 4004: a ranking model that stays live, not blessed.
    registry.add("4004", "7", created=at(70), display_name="Ranking-Wide", labels={"model_type": "ranking",
                                                                                    "blessed": "false"})
    _, last = auditlog.upload_model_entries(
        **common, model_id="4004", version_id="7", display_name="Ranking-Wide",
        artifact_uri="gs://artifacts/4004/pushed_model/7/", labels={"model_type": "ranking", "blessed": "false"},
        started_at=at(69), finished_at=at(70), operation_id="op-4004-7", parent_model=False)
    audit(last)
    # The first entry of an upload Vertex cannot tell the version of, long after the operation started: quarantined.
    unresolved, _ = auditlog.upload_model_entries(
        **common, model_id="5005", version_id="1", display_name="Later", artifact_uri="gs://artifacts/5005/1/",
        labels={}, started_at=at(71), finished_at=at(72), operation_id="op-5005-1", parent_model=False)
    audit(unresolved)
    # A registration outcome for a run the registry never recorded: no document to keep its key (the ledger does).
    services.bus.handle(RecordRegistration("run-unknown", "failed", at(73), "attempt-1", reason="no such run"))

    # Registering run-1's model: the attempt the succeeded event started failed (no Vertex AI writer in this flow), a
    # failed attempt reported, a retry asked for (carried out at once; it fails the same way), then success.
    pushed = "gs://artifacts/run-1/pushed_model/1/"
    services.bus.handle(RecordRegistration("run-1", "failed", at(31), "attempt-1", artifact_uri=pushed,
                                           reason="Vertex AI: 503 Service Unavailable"))
    services.bus.handle(RequestRegistration("run-1", "req-1", at(32), requested_by="ops@example.com"))
    services.bus.handle(RecordRegistration("run-1", "registered", at(33), "attempt-2", model_id="1001",
                                           version_id="1", artifact_uri=pushed,
                                           resource_name=f"{auditlog.model_path(PROJECT, LOCATION, '1001')}@1"))

    # Model 4004 deployed to Cloud Run (not blessed: an operator's override) and undeployed again (endpoint and
    # deploy-request documents).
    for request in ({"request_id": "deploy-4004-7", "action": "deploy", "model_id": "4004", "version_id": "7",
                     "preset": "development", "allow_unblessed": True, "reason": "shadow traffic"},
                    {"request_id": "undeploy-4004", "action": "undeploy", "model_id": "4004"}):
        payload = {"schema": "registrar.deploy-request.v1", "requested_at": auditlog.rfc3339(at(75)),
                   "requested_by": "ops@example.com", **request}
        deliver(services, "on_deploy_request", _envelope(payload, str(next(ids))))

    # Releases: the access policy saved, a model's release policy, promotions applied (unprotected), pending
    # (protected, waiting for an approver) and refused (the version is not blessed).
    services.bus.handle(UpdateAccessPolicy(policy={"roles": {"viewer": ["local:*"], "approver": ["user:lead@example.com"]}},
                                           expected_revision=0, updated_by="lead@example.com", occurred_at=at(76),
                                           request_id="policy-1"))
    services.bus.handle(UpdateReleasePolicy(model_id="4004", policy={"enabled": True, "deploy": {"preset": "development"},
                                                                     "promote": None},
                                            updated_by="lead@example.com", occurred_at=at(76), request_id="rp-1"))
    for promotion, version, alias in (("canary", "2", "canary"), ("prod", "2", "production")):
        services.bus.handle(RequestPromotion(promotion_id=new_promotion_id(promotion), model_id="1001", version_id=version,
                                             alias=alias, reason="better", requested_by="ops@example.com",
                                             requested_at=at(77), release_id=None))
    services.bus.handle(RequestPromotion(promotion_id=new_promotion_id("ranking"), model_id="4004", version_id="7",
                                         alias="production", reason="try", requested_by="ops@example.com",
                                         requested_at=at(77)))

    # Messages that can never be applied: quarantined.
    audit(b"{not json")
    audit({"insertId": "x", "timestamp": "2026-11-02T09:00:00Z"})
    unknown = auditlog.log_entry(project=PROJECT, method="ExportModel", resource_name="projects/p/locations/l/models/9",
                                 request={}, response=None, timestamp=at(80))
    audit(unknown)
    pipeline(_run_event("Bad_Run", "SUCCEEDED", 81))
    return store, services


def test_flow_wrote_every_kind_of_document(flow):
    store, _ = flow
    kinds = {name for path in store.docs for pattern, name in DOCUMENT_SCHEMAS if re.match(pattern, path)}
    assert kinds == {name for _, name in DOCUMENT_SCHEMAS}
    unmatched = [p for p in store.docs if not any(re.match(pattern, p) for pattern, _ in DOCUMENT_SCHEMAS)]
    assert unmatched == []
    quarantined = [doc for path, doc in store.docs.items() if path.startswith("quarantine/")]
    assert sorted(doc["kind"] for doc in quarantined) == ["schema", "schema", "unknown_method", "unparseable",
                                                          "unresolved_upload"]
    assert store.get("models/1001")["aliases"] == {"default": "2", "champion": "2"}
    registration = store.get("training_runs/run-1")["registration"]
    assert (registration["status"], registration["attempts"], registration["version_id"]) == ("registered", 4, "1")


def test_documents_validate_against_document_schemas(flow, registry):
    store, _ = flow
    validators = {name: _validator({"$ref": f"https://registrar.dev/schemas/documents/{name}.v1.json"}, registry)
                  for _, name in DOCUMENT_SCHEMAS}
    failures = {}
    for path, doc in sorted(store.docs.items()):
        name = next(name for pattern, name in DOCUMENT_SCHEMAS if re.match(pattern, path))
        errors = _errors(validators[name], jsonable(doc))
        if errors:
            failures[path] = errors
    assert failures == {}


def test_outbound_events_validate_against_the_registry_event_schema(flow, registry):
    store, services = flow
    validator = _validator({"$ref": "https://registrar.dev/schemas/events/registry-event.v1.json"}, registry)
    events = [doc for path, doc in store.docs.items() if "/history/" in path]
    payloads = [payload for doc in events for payload in doc["events"]]
    assert payloads and not any(doc["pending"] for doc in events)
    published = [payload for _, _, payload in services.bus.publisher.published]
    assert len(published) == len(payloads)
    for payload in payloads + published:
        assert _errors(validator, payload) == []


def test_the_idempotency_schema_names_every_command():
    schema = json.loads((SCHEMAS / "documents" / "idempotency-record.v1.json").read_text())

    assert set(schema["properties"]["command"]["enum"]) == {cls.__name__ for cls in ROUTES}


def test_every_change_kind_in_the_code_is_a_valid_history_kind(registry):
    """History and outbox accept every kind a handler can produce (found in the source, so new kinds are checked
    even before a flow produces them)."""
    source = "\n".join(p.read_text() for p in (SCHEMAS.parent / "functions" / "registrar").rglob("*.py"))
    kinds = set(re.findall(r'Change\(\s*"([a-z_.]+)"', source))
    kinds |= set(re.findall(r'"((?:model|run)\.[a-z_]+)"', source))
    assert "model.version_added" in kinds
    validator = _validator({"$ref": "https://registrar.dev/schemas/documents/history-entry.v1.json#/properties/kind"},
                           registry)
    event = _validator({"$ref": "https://registrar.dev/schemas/events/registry-event.v1.json#/properties/type"},
                       registry)
    assert {k for k in kinds if _errors(validator, k)} == set()
    assert {k for k in kinds if not k.startswith("ignored.") and _errors(event, k)} == set()


# ---------------------------------------------------------------------------------------------------------------
# The API against openapi.yaml


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule)


def test_routes_and_openapi_paths_are_the_same():
    app = create_app(lambda: InMemoryStore())
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        routes[_openapi_path(rule.rule)] = {m.lower() for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {path: {m for m in item if m in ("get", "put", "post", "delete", "patch")}
                  for path, item in _openapi()["paths"].items()}
    assert routes == documented


REQUESTS = [
    ("GET", "/healthz", 200),
    ("GET", "/kpis", 200),
    ("GET", "/models", 200),
    ("GET", "/models?page_size=1", 200),
    ("GET", "/models?model_type=ranking&sort=name", 200),
    ("GET", "/models?model_type=RANKING", 400),
    ("GET", "/models?status=", 400),
    ("GET", "/models?status=deleted", 200),
    ("GET", "/models?status=blessed&sort=best_metric&q=MOVIE", 200),
    ("GET", "/models?status=not_blessed&sort=oldest", 200),
    ("GET", "/models?status=idle", 200),
    ("GET", "/models/1001", 200),
    ("GET", "/models/2002", 200),
    ("GET", "/models/3003", 200),
    ("GET", "/models/1001/history", 200),
    ("GET", "/models/1001/history?limit=2", 200),
    ("GET", "/training-runs/run-1", 200),
    ("GET", "/training-runs/run-2", 200),
    ("GET", "/quarantine", 200),
    ("GET", "/quarantine?limit=1", 200),
    ("GET", "/promotions", 200),
    ("GET", "/promotions?status=applied&model_id=1001", 200),
    ("GET", "/promotions?status=later", 400),
    ("GET", f"/promotions/{new_promotion_id('prod')}", 200),
    ("GET", "/promotions/prm-00000000000000000000", 404),
    ("GET", "/promotions/nope", 400),
    ("GET", "/policy", 200),
    ("GET", "/models/4004/release-policy", 200),
    ("GET", "/models/9999/release-policy", 404),
    ("GET", "/kpis?verbose=1", 400),
    ("GET", "/models?page_size=0", 400),
    ("GET", "/models?page_size=many", 400),
    ("GET", "/models?page_size=1_0", 400),
    ("GET", "/models?page_size=+5", 400),
    ("GET", "/models?page_size=%205", 400),
    ("GET", "/models?sort=random", 400),
    ("GET", "/models?page_token=garbage", 400),
    ("GET", "/models/bad.id", 400),
    ("GET", "/models/1001/history?limit=5000", 400),
    ("GET", "/quarantine?limit=0", 400),
    ("GET", "/models/9999", 404),
    ("GET", "/models/9999/history", 404),
    ("GET", "/training-runs/nope", 404),
    ("GET", "/nowhere", 404),
    ("POST", "/kpis", 405),
    ("DELETE", "/models/1001", 405),
]


@pytest.fixture(scope="module")
def client(flow):
    store, _ = flow
    app = create_app(lambda: store)
    app.testing = True
    return app.test_client()


def _response_schema(spec: dict, method: str, url: str, status: int, app) -> dict:
    from werkzeug.exceptions import MethodNotAllowed, NotFound

    adapter = app.url_map.bind("localhost")
    try:
        rule, _ = adapter.match(url.split("?")[0], method=method, return_rule=True)
    except (NotFound, MethodNotAllowed):
        return {"$ref": f"{OPENAPI_URI}#/components/responses/{'NotFound' if status == 404 else 'MethodNotAllowed'}"
                        "/content/application~1json/schema"}
    path = _openapi_path(rule.rule)
    response = spec["paths"][path][method.lower()]["responses"][str(status)]
    if "$ref" in response:
        name = response["$ref"].rsplit("/", 1)[1]
        return {"$ref": f"{OPENAPI_URI}#/components/responses/{name}/content/application~1json/schema"}
    pointer = f"/paths/{path.replace('~', '~0').replace('/', '~1')}/{method.lower()}/responses/{status}"
    return {"$ref": f"{OPENAPI_URI}#{pointer}/content/application~1json/schema"}


@pytest.mark.parametrize(("method", "url", "status"), REQUESTS, ids=[f"{m} {u}" for m, u, _ in REQUESTS])
def test_api_responses_validate_against_openapi(client, registry, method, url, status):
    response = client.open(url, method=method)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    schema = _response_schema(_openapi(), method, url, status, client.application)
    assert _errors(_validator(schema, registry), response.get_json()) == []


def test_the_flow_reads_right_through_the_api(client):
    assert client.get("/kpis").get_json() == {
        "total": 2, "blessed": 0, "deployed": 0, "idle": 0, "latest_registered_at": "2026-11-02T10:10:00+00:00"}
    models = client.get("/models?page_size=1").get_json()
    assert models["total_size"] == 2 and len(models["models"]) == 1 and models["next_page_token"]
    rest = client.get(f"/models?page_size=1&page_token={models['next_page_token']}").get_json()
    assert rest["next_page_token"] is None
    assert [m["model_id"] for m in models["models"] + rest["models"]] == ["4004", "1001"]
    assert {m["model_id"] for m in client.get("/models?status=deleted").get_json()["models"]} == {"2002", "3003"}


def _enum_query_parameters() -> list[tuple[str, str, list[str]]]:
    """(path, parameter, enum) for every GET without path parameters whose query parameter lists an `enum`."""
    found = []
    for path, item in _openapi()["paths"].items():
        if "{" in path or "get" not in item:
            continue
        for parameter in item["get"].get("parameters", []):
            if parameter.get("in") == "query" and "enum" in parameter.get("schema", {}):
                found.append((path, parameter["name"], parameter["schema"]["enum"]))
    return found


ENUM_QUERY_PARAMETERS = _enum_query_parameters()


def test_enum_query_parameters_are_found():
    assert {(path, name) for path, name, _ in ENUM_QUERY_PARAMETERS} >= {
        ("/models", "status"), ("/models", "model_type"), ("/models", "sort"), ("/schedules", "status"),
        ("/promotions", "status"), ("/console/", "status")}


@pytest.mark.parametrize(("path", "name", "values"), ENUM_QUERY_PARAMETERS,
                         ids=[f"{path}?{name}" for path, name, _ in ENUM_QUERY_PARAMETERS])
def test_enum_query_parameters_take_exactly_the_listed_values(client, path, name, values):
    """What the description lists is accepted, and nothing else: not another case, not an empty value it does not list."""
    for value in values:
        response = client.get(path, query_string={name: value})
        assert response.status_code != 400, (value, response.get_data(as_text=True))
    refused = {"not-a-listed-value"} | {v.upper() for v in values if v.upper() != v} | ({""} - set(values))
    for value in sorted(refused):
        response = client.get(path, query_string={name: value})
        assert response.status_code == 400, (value, response.get_data(as_text=True))
        if response.is_json:
            assert response.get_json()["error"]["parameter"] == name
        else:
            assert f'data-parameter="{name}"' in response.get_data(as_text=True)


def test_the_schemas_are_not_vacuous(flow, registry):
    """A schema that resolved to nothing would accept anything: mutated documents must fail."""
    store, _ = flow
    model = jsonable(store.get("models/1001"))
    validator = _validator({"$ref": "https://registrar.dev/schemas/documents/registered-model.v1.json"}, registry)
    assert _errors(validator, {**model, "unexpected": 1})
    assert _errors(validator, {**model, "updated_at": "2026-11-02 10:00:00"})
    run = jsonable(training_run(store, "run-1"))  # the API's view of the stored run
    detail = _validator({"$ref": f"{OPENAPI_URI}#/components/schemas/TrainingRunDetail"}, registry)
    assert _errors(detail, {**run, "history": []}) == []
    assert _errors(detail, {**run, "history": [], "extra": True})
    assert _errors(detail, run)  # history is required
