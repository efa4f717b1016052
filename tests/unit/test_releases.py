"""Releasing models: the access policy, the requirements of a protected alias, the promotion state machine
(pending → approved → applied / rejected / expired / refused / failed), concurrent approvals, continuous delivery
and the reconciler's `unapproved_promotion` — with the real bus on the in-memory store and fakes of Vertex AI."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import pytest
from fakes import FakeServingPlatform, FakeVertex, at
from helpers import World, alias_entry, history_of, labels_entry, pipeline_event, upload_cmd
from registrar.kernel.errors import InvalidField
from registrar.kernel.paths import ACCESS_POLICY
from registrar.reconcile.audit import audit
from registrar.reconcile.tick import RunReconcile
from registrar.releases import requirements
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
from registrar.releases.delivery import actor, parse_release_policy
from registrar.releases.follow_ups import expire_due
from registrar.releases.moves import alias_moves_of_release, alias_moves_to_version
from registrar.releases.policy import (
    APPROVER,
    OPERATOR,
    VIEWER,
    Protection,
    current_policy,
    default_policy,
    parse_policy,
)
from test_scenarios import Rounds, RoundStore

MODEL = "m1"
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"
# version → (minute, labels): 1 and 2 blessed (recall 0.40, 0.42), 3 not blessed, 4 not evaluated, 5 blessed but
# worse (recall 0.30). Metrics come from each version's training run (labels never carry metrics).
VERSIONS = {
    "1": (1, {"blessed": "true", "training_run_id": "run-1"}),
    "2": (2, {"blessed": "true", "training_run_id": "run-2"}),
    "3": (3, {"blessed": "false", "training_run_id": "run-3"}),
    "4": (4, {"training_run_id": "run-4"}),
    "5": (5, {"blessed": "true", "training_run_id": "run-5"}),
}
RECALL = {"run-1": 0.40, "run-2": 0.42, "run-3": 0.50, "run-4": 0.50, "run-5": 0.30, "run-6": 0.45, "run-7": 0.47}


class Release:
    """A registry of model m1 (versions above, `production` on version 1) over a fake Vertex AI that moves aliases."""

    def __init__(self, store=None, *, now=None, **options):
        self.vertex = FakeVertex()
        self.clock = [at(100)]
        self.world = World(store, registry=self.vertex, now=now or (lambda: self.clock[0]),
                           serving=FakeServingPlatform(), **options)
        for run_id, recall in RECALL.items():
            self.world.pipeline(pipeline_event(run_id, "SUCCEEDED", at(0.5), metrics={"recall_at_100": recall}))
        for version, (minute, labels) in VERSIONS.items():
            aliases = ("production",) if version == "1" else ()
            self.vertex.add(MODEL, version, created=at(minute), labels=labels, aliases=aliases)
            self.world.handle(upload_cmd(MODEL, version, at(minute), labels=labels, aliases=aliases))
        self.requests = 0

    @property
    def store(self):
        return self.world.store

    def request(self, version: str, alias: str = "production", by: str = ALICE, **extra) -> str:
        self.requests += 1
        promotion_id = new_promotion_id(f"request-{self.requests}")
        self.world.handle(RequestPromotion(promotion_id=promotion_id, model_id=MODEL, version_id=version, alias=alias,
                                           reason="better recall", requested_by=by, requested_at=self.clock[0],
                                           release_id=extra.pop("release_id", promotion_id), **extra))
        return promotion_id

    def decide(self, promotion_id: str, by: str, decision: str = APPROVE, reason: str = ""):
        return self.world.handle(DecidePromotion(promotion_id=promotion_id, decision=decision, decided_by=by,
                                                 decided_at=self.clock[0], reason=reason))

    def promotion(self, promotion_id: str) -> dict:
        return self.store.get(f"promotions/{promotion_id}")

    def audit_log_catches_up(self) -> None:
        """The audit entries of the alias moves Vertex made reach the registry (the log sink)."""
        for i, (model_id, version, aliases) in enumerate(self.vertex.merges):
            self.world.audit(alias_entry(model_id, version, list(aliases), at(200 + i)))

    def kinds(self) -> list[str]:
        """The promotion steps in the model's history (sorted: this clock stands still, so times do not order them)."""
        return sorted(e["kind"] for e in history_of(self.store, f"models/{MODEL}").values()
                      if e["kind"].startswith("model.promotion"))


@pytest.fixture
def release() -> Release:
    return Release()


# ---------------------------------------------------------------------------------------------------------------
# The policy


def test_roles_members_and_reading():
    policy = parse_policy({"roles": {"viewer": ["domain:example.com"], "operator": [f"user:{ALICE}"],
                                     "approver": ["serviceAccount:ci@proj.iam.gserviceaccount.com"]}})
    assert policy.grants(ALICE, OPERATOR) and policy.grants(ALICE, VIEWER) and not policy.grants(ALICE, APPROVER)
    assert policy.grants("ci@proj.iam.gserviceaccount.com", APPROVER)
    assert policy.grants(CAROL, VIEWER) and not policy.grants(CAROL, OPERATOR)
    assert not policy.grants("mallory@example.org", VIEWER)
    assert not policy.grants("local:developer", VIEWER), "a domain never matches a local principal"
    assert policy.protection("production") == Protection(require_blessed=True, metric_tolerance=0.0)
    assert policy.roles_of(ALICE) == [VIEWER, OPERATOR]  # viewer through her domain


def test_local_members_match_only_local_principals_and_the_defaults_differ_by_mode():
    local, production = default_policy(local=True), default_policy(local=False)
    assert all(local.grants("local:developer", role) for role in (VIEWER, OPERATOR, APPROVER))
    assert not local.grants(ALICE, VIEWER)
    assert not any(production.grants(p, VIEWER) for p in ("local:developer", ALICE))
    assert set(production.protected_aliases) == set(local.protected_aliases) == {"production"}
    named = parse_policy({"roles": {"operator": ["local:ana"]}})
    assert named.grants("local:ana", OPERATOR) and not named.grants("local:bo", OPERATOR)


@pytest.mark.parametrize("body, field", [
    ({"roles": {"admin": []}}, "roles.admin"),
    ({"roles": {"viewer": ["alice@example.com"]}}, "roles.viewer"),
    ({"roles": {"viewer": ["group:ml@example.com"]}}, "roles.viewer"),
    ({"roles": {"viewer": "user:alice@example.com"}}, "roles.viewer"),
    ({"protected_aliases": {"Prod": {}}}, "protected_aliases.Prod"),
    ({"protected_aliases": {"production": {"metric_tolerance": -1}}}, "protected_aliases.production.metric_tolerance"),
    ({"protected_aliases": {"production": {"require_blessed": "yes"}}}, "protected_aliases.production.require_blessed"),
    ({"protected_aliases": {"production": {"approvals": 2}}}, "protected_aliases.production.approvals"),
    ({"promotion_ttl_hours": 0}, "promotion_ttl_hours"),
    ({"promotion_ttl_hours": 1.5}, "promotion_ttl_hours"),
    ({"owners": []}, "owners"),
])
def test_a_bad_policy_is_refused_naming_the_field(body, field):
    with pytest.raises(InvalidField) as refused:
        parse_policy(body)
    assert refused.value.field == field


def test_the_seed_is_stored_once_when_first_needed_and_a_saved_policy_wins(release):
    seed = {"roles": {"approver": [f"user:{BOB}"]}, "promotion_ttl_hours": 24}
    policy = current_policy(release.store, seed=seed, local=False)
    assert policy.grants(BOB, APPROVER) and policy.promotion_ttl_hours == 24
    assert release.store.get(ACCESS_POLICY)["updated_by"] == "terraform-seed"
    release.world.handle(UpdateAccessPolicy(policy={"roles": {"approver": [f"user:{CAROL}"]}}, expected_revision=0,
                                            updated_by=BOB, occurred_at=at(101), request_id="edit-1"))
    again = current_policy(release.store, seed=seed, local=False)
    assert again.grants(CAROL, APPROVER) and not again.grants(BOB, APPROVER) and again.revision == 1


def test_a_policy_save_over_a_newer_revision_or_without_approvers_is_refused(release):
    edit = dict(policy={"roles": {"approver": [f"user:{BOB}"]}}, updated_by=BOB, occurred_at=at(101))
    release.world.handle(UpdateAccessPolicy(expected_revision=0, request_id="edit-1", **edit))
    with pytest.raises(Refused) as stale:
        release.world.handle(UpdateAccessPolicy(expected_revision=0, request_id="edit-2", **edit))
    assert stale.value.status == 409 and "revision 1" in stale.value.message
    with pytest.raises(InvalidField) as locked_out:
        release.world.handle(UpdateAccessPolicy(policy={"roles": {"approver": []}}, expected_revision=1,
                                                updated_by=BOB, occurred_at=at(102), request_id="edit-3"))
    assert locked_out.value.field == "roles.approver"
    assert release.store.get(ACCESS_POLICY)["revision"] == 1
    [event] = [doc for path, doc in release.store.docs.items() if path.startswith("policy/access/history/")]
    assert event["changes"][0]["kind"] == "policy.updated" and event["changes"][0]["details"]["updated_by"] == BOB


# ---------------------------------------------------------------------------------------------------------------
# Requirements


def _version(blessed, recall):
    return {"blessed": blessed, "metrics": {} if recall is None else {"recall_at_100": recall}}


@pytest.mark.parametrize("candidate, holder, tolerance, passed", [
    (_version(True, 0.42), _version(True, 0.40), 0.0, {"blessed": True, "metric_not_worse": True}),
    (_version(True, 0.39), _version(True, 0.40), 0.0, {"blessed": True, "metric_not_worse": False}),
    (_version(True, 0.39), _version(True, 0.40), 0.02, {"blessed": True, "metric_not_worse": True}),
    (_version(False, 0.50), _version(True, 0.40), 0.0, {"blessed": False, "metric_not_worse": True}),
    (_version(None, 0.50), _version(True, 0.40), 0.0, {"blessed": False, "metric_not_worse": True}),
    (_version(True, None), _version(True, 0.40), 0.0, {"blessed": True, "metric_not_worse": False}),
    (_version(True, 0.10), _version(True, None), 0.0, {"blessed": True, "metric_not_worse": True}),
])
def test_requirements_of_a_protected_alias(candidate, holder, tolerance, passed):
    checks = requirements.evaluate(Protection(metric_tolerance=tolerance), "2", candidate, "1", holder)
    assert {c.requirement: c.passed for c in checks} == passed
    assert all(c.detail for c in checks)


def test_lower_is_better_metrics_compare_the_other_way():
    rmse = lambda value: {"blessed": True, "metrics": {"rmse": value}}  # noqa: E731
    better, worse = (requirements.evaluate(Protection(), "2", rmse(v), "1", rmse(0.9)) for v in (0.8, 0.95))
    assert better[1].passed and not worse[1].passed and "rmse 0.95 vs 0.9" in worse[1].detail


def test_no_holder_and_not_compared_metrics_pass():
    assert requirements.evaluate(Protection(), "2", _version(True, 0.1), None, None)[1].passed
    assert [c.requirement for c in requirements.evaluate(Protection(metric_tolerance=None), "2",
                                                         _version(True, 0.1), "1", _version(True, 0.9))] == ["blessed"]


# ---------------------------------------------------------------------------------------------------------------
# The state machine


def test_an_unprotected_alias_is_applied_at_once_and_the_registry_learns_it_from_the_audit_log(release):
    pid = release.request("3", alias="candidate", by=ALICE)
    doc = release.promotion(pid)
    assert (doc["status"], doc["protected"], doc["previous_version_id"]) == ("applied", False, None)
    assert release.vertex.merges == [(MODEL, "3", ("candidate",))]
    assert "candidate" not in release.world.model(MODEL)["aliases"], "no second write path: Vertex's audit entry"
    release.audit_log_catches_up()
    assert release.world.model(MODEL)["aliases"]["candidate"] == "3"
    assert release.kinds() == ["model.promotion_applied", "model.promotion_approved", "model.promotion_requested"]


def test_a_protected_alias_waits_for_another_principal_then_moves_with_both_named(release):
    pid = release.request("2", by=ALICE)
    doc = release.promotion(pid)
    assert doc["status"] == "pending" and doc["expires_at"] == at(100) + timedelta(hours=72)
    assert [c["passed"] for c in doc["checks"]] == [True, True] and release.vertex.merges == []
    with pytest.raises(Refused) as own:
        release.decide(pid, ALICE)
    assert own.value.status == 403 and "different principal" in own.value.message
    assert release.promotion(pid)["status"] == "pending"
    release.decide(pid, BOB, reason="looks good")
    doc = release.promotion(pid)
    assert (doc["status"], doc["requested_by"], doc["decided_by"], doc["previous_version_id"]) == (
        "applied", ALICE, BOB, "1")
    assert release.vertex.holder(MODEL, "production") == "2"
    release.audit_log_catches_up()
    assert release.world.model(MODEL)["aliases"]["production"] == "2"
    entries = {e["kind"]: e for e in history_of(release.store, f"models/{MODEL}").values()}
    applied = entries["model.promotion_applied"]["details"]
    assert (applied["requested_by"], applied["approved_by"], applied["previous_version_id"]) == (ALICE, BOB, "1")
    assert entries["model.promotion_approved"]["details"]["approved_by"] == BOB
    assert release.kinds() == ["model.promotion_applied", "model.promotion_approved", "model.promotion_requested"]
    assert "model.promotion_applied" in release.world.published_types()


def test_rejected_and_decided_promotions_cannot_be_decided_again(release):
    pid = release.request("2", by=ALICE)
    release.decide(pid, BOB, REJECT, reason="wait for the A/B test")
    doc = release.promotion(pid)
    assert (doc["status"], doc["decided_by"], doc["decision_reason"]) == ("rejected", BOB, "wait for the A/B test")
    with pytest.raises(Refused) as again:
        release.decide(pid, CAROL)
    assert again.value.status == 409 and "rejected by bob@example.com" in again.value.message
    assert release.vertex.merges == [] and release.kinds() == ["model.promotion_rejected", "model.promotion_requested"]
    with pytest.raises(Refused) as missing:
        release.decide(new_promotion_id("nothing"), BOB)
    assert missing.value.status == 404


def test_a_promotion_expires_when_decided_late_or_swept(release):
    late = release.request("2", by=ALICE)
    swept = release.request("2", by=ALICE)
    release.clock[0] = at(100) + timedelta(hours=72)
    release.decide(late, BOB)
    assert release.promotion(late)["status"] == "expired" and release.vertex.merges == []
    assert expire_due(release.world.services) == 1
    assert release.promotion(swept)["status"] == "expired"
    assert expire_due(release.world.services) == 0
    assert release.kinds().count("model.promotion_expired") == 2


@pytest.mark.parametrize("version, failing", [("3", ["blessed"]), ("4", ["blessed"]), ("5", ["metric_not_worse"])])
def test_requirements_that_fail_refuse_the_promotion_and_say_why(release, version, failing):
    pid = release.request(version, by=ALICE)
    doc = release.promotion(pid)
    assert doc["status"] == "refused" and [c["requirement"] for c in doc["checks"] if not c["passed"]] == failing
    assert failing[0] in doc["failure"] and release.vertex.merges == []
    [entry] = [e for e in history_of(release.store, f"models/{MODEL}").values()
               if e["kind"] == "model.promotion_refused"]
    assert entry["details"]["requested_by"] == ALICE and entry["details"]["checks"] == doc["checks"]


def test_the_requirements_are_checked_again_when_approved(release):
    pid = release.request("2", by=ALICE)
    # Meanwhile version 2's evaluation is withdrawn (its labels say not blessed): the approval refuses it.
    release.world.audit(labels_entry(MODEL, "2", {"blessed": "false"}, at(150)))
    release.decide(pid, BOB)
    assert release.promotion(pid)["status"] == "refused" and release.vertex.holder(MODEL, "production") == "1"


def test_vertex_refusing_the_move_fails_the_promotion_and_an_outage_is_retried_by_the_same_approval(release):
    pid = release.request("2", by=ALICE)
    release.vertex.down = True
    with pytest.raises(Exception, match="unavailable"):
        release.decide(pid, BOB)
    assert release.promotion(pid)["status"] == "approved"
    release.vertex.down = False
    release.decide(pid, BOB)  # the same approval again (a retry): a duplicate whose follow-up moves the alias
    assert release.promotion(pid)["status"] == "applied" and len(release.vertex.merges) == 1
    gone = release.request("2", alias="candidate")
    assert release.promotion(gone)["status"] == "applied"
    del release.vertex.versions[(MODEL, "1")]
    vanished = release.request("1", alias="canary")
    doc = release.promotion(vanished)
    assert doc["status"] == "failed" and "no longer exists" in doc["failure"]


def test_a_redelivered_approval_applies_once(release):
    pid = release.request("2", by=ALICE)
    release.decide(pid, BOB)
    assert release.decide(pid, BOB).status == "duplicate"
    assert release.kinds().count("model.promotion_applied") == 1
    assert release.promotion(pid)["status"] == "applied"


def test_concurrent_approvals_by_two_approvers_apply_once():
    """Both approvals read the pending promotion before either commits (forced, not timed): one wins, the other
    retries, finds it approved and is refused; the alias moves once."""
    release = Release(RoundStore(), max_attempts=3)
    pid = release.request("2", by=ALICE)
    rounds = release.store.rounds = Rounds(2)
    refused: list[Refused] = []

    def approve(by: str) -> None:
        rounds.joining()
        try:
            release.decide(pid, by)
        except Refused as exc:
            refused.append(exc)
        finally:
            rounds.leave()

    threads = [threading.Thread(target=approve, args=(by,)) for by in (BOB, CAROL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    doc = release.promotion(pid)
    assert doc["status"] == "applied" and doc["decided_by"] in (BOB, CAROL)
    assert len(refused) == 1 and refused[0].status == 409
    assert release.vertex.merges == [(MODEL, "2", ("production",))]
    assert release.kinds() == ["model.promotion_applied", "model.promotion_approved", "model.promotion_requested"]


def test_alias_moves_of_a_release_name_what_to_move_back(release):
    pid = release.request("2", by=ALICE, release_id="rel-abc")
    release.decide(pid, BOB)
    [move] = alias_moves_of_release(release.store, MODEL, "rel-abc")
    assert (move.alias, move.version_id, move.previous_version_id, move.requested_by, move.approved_by) == (
        "production", "2", "1", ALICE, BOB)
    assert alias_moves_to_version(release.store, MODEL, "2") == [move]
    assert alias_moves_of_release(release.store, MODEL, "rel-other") == []


# ---------------------------------------------------------------------------------------------------------------
# The reconciler: protected aliases moved out of band


def test_an_out_of_band_move_of_a_protected_alias_is_reported_until_an_approved_promotion_covers_it(release):
    release.vertex.merge_aliases(MODEL, "2", ["production"])  # the console, not Registrar
    release.vertex.merges.clear()
    release.audit_log_catches_up()
    release.world.audit(alias_entry(MODEL, "2", ["production"], at(300)))
    report = audit(release.store, release.vertex, now=at(400), concurrency=1)
    [found] = report.of("unapproved_promotion")
    assert (found.model_id, found.version_id, found.data["alias"]) == (MODEL, "2", "production")
    assert "no approved promotion" in found.detail
    pid = release.request("2", by=ALICE)
    release.decide(pid, BOB)
    assert audit(release.store, release.vertex, now=at(401), concurrency=1).of("unapproved_promotion") == []
    release.vertex.merge_aliases(MODEL, "1", ["production"])  # moved back by hand
    [back] = audit(release.store, release.vertex, now=at(402), concurrency=1).of("unapproved_promotion")
    assert back.version_id == "1" and "put it on version 2" in back.detail


# ---------------------------------------------------------------------------------------------------------------
# Continuous delivery


def _enable(release: Release, **policy) -> None:
    release.world.handle(UpdateReleasePolicy(model_id=MODEL, policy={"enabled": True, **policy}, updated_by=BOB,
                                             occurred_at=at(99), request_id="rp-1"))


def _deploy_requests(release: Release) -> list[dict]:
    return [payload for topic, _, payload in release.world.publisher.published if topic == "deploy-requests"]


def test_a_new_blessed_version_is_deployed_to_staging_and_asked_for_production_by_the_policy(release):
    _enable(release, deploy={"preset": "development"}, promote={"alias": "production"})
    release.vertex.add(MODEL, "6", created=at(6), labels={"blessed": "true", "training_run_id": "run-6"})
    release.world.handle(upload_cmd(MODEL, "6", at(6), labels={"blessed": "true", "training_run_id": "run-6"}))
    [deploy] = _deploy_requests(release)
    assert (deploy["version_id"], deploy["preset"], deploy["requested_by"]) == ("6", "development", actor(MODEL))
    assert deploy["service_name"].startswith("m1-staging")
    [promotion] = [doc for path, doc in release.store.docs.items() if path.startswith("promotions/")]
    assert (promotion["status"], promotion["requested_by"], promotion["release_id"]) == (
        "pending", actor(MODEL), deploy["request_id"])
    entries = history_of(release.store, f"models/{MODEL}").values()
    started = [e for e in entries if e["kind"] == "model.release_started"]
    assert len(started) == 1 and started[0]["details"]["requested_by"] == actor(MODEL)
    release.decide(promotion["promotion_id"], BOB)
    assert release.vertex.holder(MODEL, "production") == "6"
    # The same fact again (its follow-up publishes the same request: on_deploy_request takes it once), or a later
    # fact about the same version, starts nothing new.
    release.world.handle(upload_cmd(MODEL, "6", at(6), labels={"blessed": "true", "training_run_id": "run-6"}))
    release.world.audit(labels_entry(MODEL, "6", {"blessed": "true", "team": "x"}, at(7)))
    assert {d["request_id"] for d in _deploy_requests(release)} == {deploy["request_id"]}
    assert len([p for p in release.store.docs if p.startswith("promotions/")]) == 1


def test_the_policy_delivers_nothing_when_off_or_for_a_version_that_is_not_blessed_or_not_the_newest(release):
    release.world.handle(upload_cmd(MODEL, "6", at(6), labels={"blessed": "true"}))
    assert _deploy_requests(release) == []  # off by default
    _enable(release, deploy={"preset": "development"})
    release.world.handle(upload_cmd(MODEL, "7", at(7), labels={"blessed": "false"}))
    release.world.handle(upload_cmd(MODEL, "8", at(8), labels={}))
    release.world.audit(labels_entry(MODEL, "2", {"blessed": "true", "x": "y"}, at(9)))
    assert _deploy_requests(release) == []
    # Blessed later (a label update): delivered then.
    release.world.audit(labels_entry(MODEL, "8", {"blessed": "true"}, at(10)))
    assert [d["version_id"] for d in _deploy_requests(release)] == ["8"]


def test_a_version_blessed_by_its_runs_evaluation_after_the_upload_is_delivered_then_once(release):
    _enable(release, deploy={"preset": "development"}, promote={"alias": "production"})
    release.world.handle(upload_cmd(MODEL, "6", at(6), labels={"training_run_id": "run-late", "blessed": "unknown"}))
    assert _deploy_requests(release) == []  # not evaluated yet
    done = pipeline_event("run-late", "SUCCEEDED", at(7), blessed=True, metrics={"recall_at_100": 0.5},
                          model_type="retrieval", artifacts={"pushed_model_uri": "gs://a/run-late/pushed_model/1/"})
    release.world.pipeline(done, message_id="run-late-done")
    [deploy] = _deploy_requests(release)
    assert (deploy["version_id"], deploy["requested_by"]) == ("6", actor(MODEL))
    [promotion] = [doc for path, doc in release.store.docs.items() if path.startswith("promotions/")]
    assert (promotion["version_id"], promotion["release_id"]) == ("6", deploy["request_id"])
    started = [e for e in history_of(release.store, f"models/{MODEL}").values() if e["kind"] == "model.release_started"]
    assert len(started) == 1 and started[0]["version_id"] == "6"
    # The run's fact redelivered (a crash after its commit) carries the same release out again; nothing new starts.
    release.world.pipeline(done, message_id="run-late-done")
    assert [d["request_id"] for d in _deploy_requests(release)] == [deploy["request_id"]] * 2
    assert len([p for p in release.store.docs if p.startswith("promotions/")]) == 1


@pytest.mark.parametrize("body, field", [
    ({"enabled": "yes"}, "enabled"),
    ({"enabled": True}, "enabled"),
    ({"deploy": {"preset": "huge"}}, "deploy.preset"),
    ({"deploy": {"preset": {}}, "enabled": False}, "deploy.preset"),  # an empty object is not "the default"
    ({"deploy": {"service_name": "Bad_Name"}}, "deploy.service_name"),
    ({"promote": {"alias": "-x"}}, "promote.alias"),
    ({"promote": "production"}, "promote"),
    ({"schedule": "nightly"}, "schedule"),
])
def test_a_bad_release_policy_is_refused_naming_the_field(body, field):
    with pytest.raises(InvalidField) as refused:
        parse_release_policy(body)
    assert refused.value.field == field


def test_the_reconcile_tick_expires_promotions_past_their_time(release):
    pid = release.request("2", by=ALICE)
    release.clock[0] = at(100) + timedelta(hours=71)
    release.world.handle(RunReconcile(tick_id="tick-1", requested_at=release.clock[0], fix=False))
    assert release.promotion(pid)["status"] == "pending"
    release.clock[0] = at(100) + timedelta(hours=73)
    release.world.handle(RunReconcile(tick_id="tick-2", requested_at=release.clock[0], fix=False))
    assert release.promotion(pid)["status"] == "expired"


def _on_deploy_request(release: Release, payload: dict, message_id: str):
    data = base64.b64encode(json.dumps(payload).encode()).decode()
    return release.world.deliver("on_deploy_request", {"message": {"data": data, "messageId": message_id}})


def test_a_rollback_moves_back_the_alias_its_undone_release_moved_once(release):
    """Versions 6 and 7 are each deployed to staging and promoted to production by the release policy; rolling the
    staging service back to 6 puts production back on 6 in Vertex AI, records it on 7's promotion (so the audit
    sees no unapproved move), and a redelivered rollback moves nothing again."""
    _enable(release, deploy={"preset": "development"}, promote={"alias": "production"})
    promotions = {}
    for version, minute in (("6", 6), ("7", 7)):
        labels = {"blessed": "true", "training_run_id": f"run-{version}"}
        release.vertex.add(MODEL, version, created=at(minute), labels=labels)
        release.world.handle(upload_cmd(MODEL, version, at(minute), labels=labels))
        deploy = _deploy_requests(release)[-1]
        _on_deploy_request(release, deploy, f"m-deploy-{version}")
        [promotions[version]] = [doc["promotion_id"] for path, doc in release.store.docs.items()
                                 if path.startswith("promotions/") and doc["version_id"] == version]
        release.decide(promotions[version], BOB)
        release.audit_log_catches_up()
    assert release.vertex.holder(MODEL, "production") == "7"
    assert release.promotion(promotions["7"])["previous_version_id"] == "6"

    rollback = {"schema": "registrar.deploy-request.v1", "request_id": "req-rollback-1", "action": "rollback",
                "model_id": MODEL, "service_name": deploy["service_name"], "requested_at": at(120).isoformat(),
                "requested_by": ALICE}
    _on_deploy_request(release, rollback, "m-rollback")
    request = release.store.get("deployments/req-rollback-1")
    assert (request["status"], request["version_id"]) == ("deployed", "6")
    assert release.vertex.holder(MODEL, "production") == "6"
    undone = release.promotion(promotions["7"])
    assert (undone["status"], undone["rolled_back_by"]) == ("applied", "req-rollback-1")
    assert release.promotion(promotions["6"]).get("rolled_back_at") is None
    assert release.kinds().count("model.promotion_rolled_back") == 1

    release.audit_log_catches_up()
    assert release.world.model(MODEL)["aliases"]["production"] == "6"
    report = audit(release.store, release.vertex, now=at(300))
    assert [d for d in report.discrepancies if d.category == "unapproved_promotion"] == []

    merges = len(release.vertex.merges)
    _on_deploy_request(release, rollback, "m-rollback-again")  # redelivered
    assert len(release.vertex.merges) == merges and release.kinds().count("model.promotion_rolled_back") == 1
