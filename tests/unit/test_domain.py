"""Pure domain rules: the one definition of a live model, aliases, KPIs, run facts."""

from __future__ import annotations

import pytest
from helpers import at, run_cmd
from pipeline_records import EVALUATION, LINEAGE, SCANN, records
from registrar.kernel import labels as label_rules
from registrar.kernel import model as domain
from registrar.kernel.ids import stable_id
from registrar.kernel.model import DELETED, LIVE, AliasFact, Model, Version
from registrar.registration.runs import apply_run_fact


def v(vid: str, minute: float, state: str = LIVE, **kw) -> Version:
    return Version(version_id=vid, state=state, uploaded_at=at(minute), **kw)


def test_summarize_counts_only_live_versions():
    model = Model("m1", display_name="Recs Retrieval")
    versions = {"1": v("1", 1, blessed=True, model_type="retrieval"), "2": v("2", 2, DELETED, blessed=False),
                "3": v("3", 3, blessed=False, metrics={"recall_at_100": 0.3})}
    s = domain.summarize(model, versions)
    assert s["is_live"] is True and s["live_version_count"] == 2 and s["status"] == "registered"
    assert s["latest_version_id"] == "3" and s["latest_registered_at"] == at(3)
    assert s["blessed"] is False and s["evaluation"] == "not_blessed"
    assert s["model_type"] == "retrieval", "falls back to the newest version that names a type"
    assert s["best_metric"] == {"name": "recall_at_100", "value": 0.3}
    assert s["name_lower"] == "recs retrieval"
    assert s["aliases"] == {"default": "3"}
    assert s["deployed"] is False


def test_summarize_without_live_versions_is_not_live():
    s = domain.summarize(Model("m1"), {"1": v("1", 1, DELETED)})
    assert s["is_live"] is False and s["live_version_count"] == 0 and s["status"] == "deleted"
    assert s["aliases"] == {} and s["latest_version_id"] is None and s["evaluation"] is None
    assert domain.summarize(Model("m1"), {})["is_live"] is False


@pytest.mark.parametrize("blessed, evaluation", [(None, "pending"), (True, "blessed"), (False, "not_blessed")])
def test_evaluation_follows_latest_live_version(blessed, evaluation):
    versions = {"1": v("1", 1, blessed=not blessed), "2": v("2", 2, blessed=blessed)}
    assert domain.summarize(Model("m"), versions)["evaluation"] == evaluation


def test_effective_aliases_last_fact_on_live_version_and_default_fallback():
    model = Model("m1", alias_facts={"prod": AliasFact("1", at(5)), "canary": AliasFact("2", at(6)),
                                     "old": AliasFact(None, at(7)), "default": AliasFact("2", at(4))})
    versions = {"1": v("1", 1), "2": v("2", 2, DELETED), "3": v("3", 3)}
    aliases = domain.effective_aliases(model, versions)
    assert aliases == {"prod": "1", "default": "3"}, "aliases on deleted versions vanish; default falls back"
    model.alias_facts["default"] = AliasFact("1", at(8))
    assert domain.effective_aliases(model, versions)["default"] == "1"


def test_default_fallback_breaks_time_ties_by_version_number():
    versions = {"9": v("9", 1), "10": v("10", 1)}
    assert domain.effective_aliases(Model("m"), versions) == {"default": "10"}


@pytest.mark.parametrize("alias, ok", [("default", True), ("prod", True), ("champion-2", True), ("a", False),
                                       ("Prod", False), ("2prod", False), ("prod-", False), ("pro_d", False),
                                       ("-prod", False), ("x" * 129, False)])
def test_alias_syntax(alias, ok):
    assert domain.is_valid_alias(alias) is ok


def test_kpis_have_exactly_five_keys_and_count_live_models_only():
    docs = [
        {"is_live": True, "blessed": True, "deployed": False, "latest_registered_at": at(3)},
        {"is_live": True, "blessed": True, "deployed": True, "latest_registered_at": at(9)},
        {"is_live": True, "blessed": False, "deployed": False, "latest_registered_at": at(1)},
        {"is_live": False, "blessed": True, "deployed": True, "latest_registered_at": at(20)},
    ]
    k = domain.kpis(docs)
    assert list(k) == list(domain.KPI_KEYS) == ["total", "blessed", "deployed", "idle", "latest_registered_at"]
    assert k == {"total": 3, "blessed": 2, "deployed": 1, "idle": 1, "latest_registered_at": at(9)}
    assert domain.kpis([]) == {"total": 0, "blessed": 0, "deployed": 0, "idle": 0, "latest_registered_at": None}


def test_best_metric_and_direction():
    assert domain.best_metric({"loss": 1.0, "rmse": 0.9}) == ("rmse", 0.9)
    assert domain.best_metric({"rmse": 0.9, "recall_at_100": 0.2}) == ("recall_at_100", 0.2)
    assert domain.best_metric({"loss": 1.0}) is None
    assert domain.higher_is_better("recall_at_100") and domain.higher_is_better("factorized_top_k/top_100_x")
    assert not domain.higher_is_better("rmse")


def test_label_helpers():
    labels = {"registrar-run-id": "run-7", "blessed": "TRUE", "metric_recall_at_100": "0_42",
              "metric_rmse": "0-91", "metric_bad": "x"}
    assert label_rules.run_id_from_labels(labels) == "run-7"
    assert label_rules.run_id_from_labels({"training_run_id": "a", "registrar-run-id": "b"}) == "a"
    assert label_rules.run_id_from_labels({}) is None
    assert label_rules.blessed_from_labels(labels) is True
    assert label_rules.blessed_from_labels({"blessed": "false"}) is False
    assert label_rules.blessed_from_labels({}) is None
    # A registration of a run whose blessing had not arrived writes `unknown`: not evaluated, not "not blessed".
    assert label_rules.blessed_from_labels({"blessed": "unknown"}) is None
    assert label_rules.blessed_from_labels({"blessed": "No"}) is False


def test_model_and_version_documents_round_trip():
    model = Model("m1", "Recs", "projects/p/locations/l/models/m1", at(3),
                  {"prod": AliasFact("1", at(2)), "x": AliasFact(None, at(4))}, at(1))
    assert Model.from_doc(model.to_doc()) == model
    version = v("1", 1, labels={"a": "b"}, metrics={"rmse": 1.0})
    assert Version.from_doc({**version.to_doc(), "aliases": ["default"]}) == version


def test_stable_id_is_deterministic_and_separates_parts():
    assert stable_id("a", "b") == stable_id("a", "b")
    assert stable_id("a", "b") != stable_id("ab")
    assert len(stable_id("x")) == 32


# ---------------------------------------------------------------------------------------------------------------
# Runs


def test_first_terminal_fact_wins_and_running_after_terminal_is_stale():
    r = apply_run_fact(None, run_cmd("r", "RUNNING", at(0), stage="Trainer"))
    assert r.doc["status"] == "RUNNING" and r.doc["started_at"] == at(0) and r.changed and not r.finished_now
    r = apply_run_fact(r.doc, run_cmd("r", "SUCCEEDED", at(10), metrics={"rmse": 0.9}, blessed=True))
    assert r.finished_now and r.succeeded_now and r.doc["finished_at"] == at(10)
    assert r.doc["metrics"] == {"rmse": 0.9} and r.doc["blessed"] is True
    again = apply_run_fact(r.doc, run_cmd("r", "SUCCEEDED", at(10), metrics={"rmse": 0.9}, blessed=True))
    assert not again.changed and not again.finished_now
    late = apply_run_fact(r.doc, run_cmd("r", "RUNNING", at(11), stage="Evaluator"))
    assert late.doc["status"] == "SUCCEEDED" and late.doc.get("stage") == "Trainer"
    failed = apply_run_fact(r.doc, run_cmd("r", "FAILED", at(12), error_message="boom"))
    assert failed.doc["status"] == "SUCCEEDED" and "error_message" not in failed.doc and not failed.finished_now


def test_log_route_adds_route_without_changing_outcome():
    r = apply_run_fact(None, run_cmd("r", "SUCCEEDED", at(10), metrics={"rmse": 0.9}, blessed=False))
    r2 = apply_run_fact(r.doc, run_cmd("r", "SUCCEEDED", at(10.1), route="log"))
    assert r2.changed and not r2.finished_now
    assert r2.doc["routes"] == ["event", "log"]
    assert r2.doc["metrics"] == {"rmse": 0.9} and r2.doc["blessed"] is False and r2.doc["finished_at"] == at(10)


def test_details_fill_in_from_the_event_after_the_log():
    r = apply_run_fact(None, run_cmd("r", "FAILED", at(10), route="log", error_message="DAG failed"))
    assert r.finished_now and not r.succeeded_now and r.doc["error_message"] == "DAG failed"
    r2 = apply_run_fact(r.doc, run_cmd("r", "FAILED", at(9.9), stage="Trainer", model_name="recs"))
    assert r2.doc["stage"] == "Trainer" and r2.doc["model_name"] == "recs" and not r2.finished_now


def test_the_events_evaluation_lineage_and_scann_settings_are_kept_on_the_run_whatever_the_order():
    success = run_cmd("r", "SUCCEEDED", at(10), metrics={"recall_at_100": 0.3}, blessed=False, **records())
    log = run_cmd("r", "SUCCEEDED", at(10.1), route="log")
    running = run_cmd("r", "RUNNING", at(1), stage="Trainer")
    for order in ([running, success, log], [log, success, running], [success, log, running, success]):
        doc = None
        for cmd in order:
            doc = apply_run_fact(doc, cmd).doc
        assert (doc["evaluation"], doc["lineage"], doc["scann"]) == (EVALUATION, LINEAGE, SCANN)
        assert doc["blessed"] is False and doc["evaluation"]["blessed"] is False
    again = apply_run_fact(doc, success)
    assert not again.changed


def test_a_failed_run_keeps_the_lineage_its_event_knew():
    known = {"input": LINEAGE["input"], "pipeline_job": LINEAGE["pipeline_job"]}
    r = apply_run_fact(None, run_cmd("r", "FAILED", at(10), error_message="Trainer: OOM", lineage=known))
    assert r.doc["lineage"] == known and "evaluation" not in r.doc and "scann" not in r.doc
