"""The compiled event schemas (fastjsonschema) give the verdicts of the reference validator (jsonschema) on valid
payloads and on every mutation of them: a dropped required field, a value of each other type, an unknown field, a
timestamp without an offset. The schema files stay the contract."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from helpers import at, pipeline_event, pipeline_log_entry
from registrar.kernel import schemas
from registrar.kernel.errors import PermanentError

from localcloud import auditlog

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
WRONG_VALUES = (None, True, 7, 2.5, "x", "", [], ["x"], {}, {"x": 1}, "2026-11-02 10:00:00", "2026-11-02T10:00:00")


def samples() -> dict[str, list[dict]]:
    audit = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("audit_*.json"))]
    audit.append(auditlog.merge_version_aliases_entry(project="p", location="l", model_id="1", version_id="2",
                                                      aliases=["prod"], at=at(1)))
    return {
        "events/model-audit-log-entry.v1.json": audit,
        "events/pipeline-run-event.v1.json": [
            json.loads((FIXTURES / "pipeline_run_event.json").read_text()),
            pipeline_event("run-1", "SUCCEEDED", at(3), metrics={"recall_at_100": 0.4}, blessed=True,
                           artifacts={"pushed_model_uri": "gs://a/pushed_model/1/"}, model_type="retrieval")],
        "events/pipeline-job-log-entry.v1.json": [
            json.loads((FIXTURES / "pipeline_job_log_entry.json").read_text()),
            pipeline_log_entry("run-1", "FAILED", at(2), error="OOM")],
        "events/deploy-request.v1.json": [
            {"schema": "registrar.deploy-request.v1", "request_id": "req-00000001", "action": "deploy",
             "model_id": "m1", "version_id": "1", "preset": "development", "overrides": {"min_instances": 1},
             "requested_at": "2026-11-02T09:00:00Z", "requested_by": "ops@example.com"},
            {"schema": "registrar.deploy-request.v1", "request_id": "req-00000002", "action": "undeploy",
             "model_id": "m1", "requested_at": "2026-11-02T09:00:00+01:00"},
            {"schema": "registrar.deploy-request.v1", "request_id": "req-00000003", "action": "register",
             "training_run_id": "run-1", "requested_at": "2026-11-02T09:00:00Z"}],
        "events/schedule-tick.v1.json": [
            {"schema": "registrar.schedule-tick.v1", "schedule_id": "sch-0123456789abcdef0123"},
            {"schema": "registrar.schedule-tick.v1", "schedule_id": "sch-0123456789abcdef0123",
             "slot": "2026-11-02T09:00:00Z", "trigger": "manual", "requested_by": "ops@example.com"}],
        "events/reconcile-tick.v1.json": [
            {"schema": "registrar.reconcile-tick.v1", "fix": True},
            {"schema": "registrar.reconcile-tick.v1", "tick_id": "t-1", "requested_at": "2026-11-02T09:00:00Z",
             "fix": False}],
    }


def mutations(payload: dict):
    yield payload
    for key in list(payload):
        yield {k: v for k, v in payload.items() if k != key}
        for wrong in WRONG_VALUES:
            yield {**payload, key: wrong}
    yield {**payload, "unexpected_field": 1}
    for key, value in payload.items():
        if isinstance(value, dict):
            for inner in list(value):
                nested = copy.deepcopy(payload)
                del nested[key][inner]
                yield nested
                for wrong in WRONG_VALUES[:6]:
                    nested = copy.deepcopy(payload)
                    nested[key][inner] = wrong
                    yield nested


def reference_accepts(payload, relative: str) -> bool:
    return not any(True for _ in schemas.validator(relative).iter_errors(payload))


def compiled_accepts(payload, relative: str) -> bool:
    try:
        schemas.compiled(relative)(payload)
        return True
    except Exception:  # noqa: BLE001 - any refusal counts as a refusal
        return False


@pytest.mark.parametrize("relative", sorted(samples()))
def test_compiled_and_reference_validators_agree(relative):
    checked = accepted = 0
    disagreements = []
    for payload in samples()[relative]:
        assert reference_accepts(payload, relative), "the valid samples are valid"
        for variant in mutations(payload):
            reference, compiled = reference_accepts(variant, relative), compiled_accepts(variant, relative)
            checked += 1
            accepted += reference
            if reference != compiled:
                disagreements.append((variant, reference, compiled))
    assert disagreements == []
    assert checked > 50 and 0 < accepted < checked, "the samples exercise both verdicts"


def test_a_refused_payload_is_named_by_the_reference_validator():
    with pytest.raises(PermanentError) as refused:
        schemas.validate({"schema": "registrar.reconcile-tick.v1", "fix": "yes"}, "events/reconcile-tick.v1.json")
    assert "fix" in refused.value.reason and refused.value.kind == "schema"
