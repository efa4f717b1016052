"""Which models an audit lists the versions of: every model the first time (and without an audit log), then only
those that can have changed since the last clean audit; no skip hides drift, whatever ListModels shows."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from fakes import FakeChangeLog, FakeModelRegistry, at
from helpers import World, upload_cmd
from registrar.kernel.ports import ModelRow
from registrar.reconcile.pacing import RateLimit
from registrar.reconcile.report import latest_report
from registrar.reconcile.scope import CHANGE_LOG_MARGIN
from registrar.reconcile.tick import run_reconcile

MODELS = [f"m{i}" for i in range(10)]
FIRST_AUDIT = at(1000)
LATER = at(2000)


class CountingRegistry(FakeModelRegistry):
    """Knows which models' versions were listed, and shows ListModels rows whose times never move (Google does
    not promise they do when another version changes)."""

    def __init__(self) -> None:
        super().__init__()
        self.listed: list[str] = []

    def list_versions(self, model_id):
        self.listed.append(model_id)
        return super().list_versions(model_id)

    def iter_model_rows(self):
        for model_id, name in self.iter_models():
            default = next(v for (m, _), v in sorted(self.versions.items()) if m == model_id and "default" in v.aliases)
            yield ModelRow(model_id, name, update_time=at(0), version_id=default.version_id,
                           version_update_time=at(0), aliases=default.aliases, labels=dict(default.labels))


class Clock:
    def __init__(self) -> None:
        self.now = at(500)

    def __call__(self):
        return self.now


def world(change_log: FakeChangeLog | None) -> World:
    registry = CountingRegistry()
    w = World(registry=registry, change_log=change_log, now=Clock())
    for model_id in MODELS:
        for version_id, minute in (("1", 1), ("2", 2)):
            aliases = ("default",) if version_id == "2" else ()
            labels = {"training_run_id": f"run-{model_id}-{version_id}"}
            registry.add(model_id, version_id, created=at(minute), aliases=aliases, labels=labels)
            w.bus.handle(upload_cmd(model_id, version_id, at(minute), aliases=aliases, labels=labels))
    return w


def plant_drift(w: World, log: FakeChangeLog | None, when) -> None:
    """The four kinds of drift, each on its own model, each a change Vertex logs and the registry never heard of."""
    vertex: CountingRegistry = w.registry
    del vertex.versions[("m1", "1")]  # deleted out of band
    v1 = vertex.versions[("m2", "1")]  # an alias moved
    vertex.versions[("m2", "1")] = dataclasses.replace(v1, aliases=("champion",))
    v1 = vertex.versions[("m3", "1")]  # labels changed
    vertex.versions[("m3", "1")] = dataclasses.replace(v1, labels={**v1.labels, "blessed": "true"})
    vertex.add("m4", "3", created=when, labels={"training_run_id": "run-m4-3"})  # a version added, no event
    if log is not None:
        for model_id in ("m1", "m2", "m3", "m4"):
            log.record(when, model_id)


def kinds(report) -> list[tuple[str, str]]:
    return [(d.category, d.model_id) for d in report.discrepancies]


def test_the_first_audit_lists_every_model_and_later_ones_only_what_can_have_changed():
    log = FakeChangeLog()
    w = world(log)
    first = run_reconcile(w.services, fix=False, now=FIRST_AUDIT)
    assert first.is_clean and first.scope.full and sorted(w.registry.listed) == MODELS
    assert latest_report(w.store)["scope"]["clean_since"] == FIRST_AUDIT.isoformat()

    plant_drift(w, log, FIRST_AUDIT + timedelta(minutes=5))
    w.registry.listed.clear()
    report = run_reconcile(w.services, fix=True, now=LATER)
    assert sorted(w.registry.listed) == ["m1", "m2", "m3", "m4"]
    assert log.reads == [FIRST_AUDIT - CHANGE_LOG_MARGIN]
    assert sorted(kinds(report)) == [("alias_mismatch", "m2"), ("label_mismatch", "m3"), ("orphan", "m1"),
                                     ("unrecorded_ours", "m4")]
    assert not report.scope.full and (report.scope.models_checked, report.scope.models_skipped) == (4, 6)
    assert report.scope.clean_since == FIRST_AUDIT  # drift found: the next audit reads the log from there again

    after = run_reconcile(w.services, fix=False, now=LATER + timedelta(minutes=1))
    assert after.is_clean and after.scope.clean_since == LATER + timedelta(minutes=1)


def test_without_the_audit_log_every_audit_lists_every_model():
    w = world(None)
    run_reconcile(w.services, fix=False, now=FIRST_AUDIT)
    plant_drift(w, None, FIRST_AUDIT + timedelta(minutes=5))
    w.registry.listed.clear()
    report = run_reconcile(w.services, fix=False, now=LATER)
    assert report.scope.full and sorted(w.registry.listed) == MODELS
    assert {m for _, m in kinds(report)} == {"m1", "m2", "m3", "m4"}


def test_listmodels_alone_would_miss_the_drift_the_audit_log_names():
    """The rows of CountingRegistry never move: a skip on update times would have hidden every planted change."""
    log = FakeChangeLog()
    w = world(log)
    run_reconcile(w.services, fix=False, now=FIRST_AUDIT)
    plant_drift(w, None, FIRST_AUDIT + timedelta(minutes=5))  # changes the log does not name (impossible in Vertex)
    w.registry.listed.clear()
    report = run_reconcile(w.services, fix=False, now=LATER)
    assert w.registry.listed == [] and report.is_clean


def test_a_registry_change_since_the_last_clean_audit_is_compared_again():
    log = FakeChangeLog()
    w = world(log)
    run_reconcile(w.services, fix=False, now=FIRST_AUDIT)
    w.services.now.now = FIRST_AUDIT + timedelta(minutes=1)
    w.bus.handle(upload_cmd("m7", "3", FIRST_AUDIT + timedelta(minutes=1)))  # only the registry learnt of it
    w.registry.listed.clear()
    report = run_reconcile(w.services, fix=False, now=LATER)
    assert "m7" in w.registry.listed
    assert ("orphan", "m7") in kinds(report)


def test_a_model_missing_from_listmodels_or_new_in_it_is_compared():
    log = FakeChangeLog()
    w = world(log)
    run_reconcile(w.services, fix=False, now=FIRST_AUDIT)
    for key in [k for k in w.registry.versions if k[0] == "m5"]:
        del w.registry.versions[key]  # the whole model deleted, its entries lost
    w.registry.add("m-new", "1", created=at(5), aliases=("default",))
    w.registry.listed.clear()
    report = run_reconcile(w.services, fix=False, now=LATER)
    assert sorted(w.registry.listed) == ["m-new"]  # m5 is not in ListModels: its versions are confirmed one by one
    assert sorted(kinds(report)) == [("orphan", "m5"), ("orphan", "m5"), ("unrecorded_foreign", "m-new")]


def test_full_compares_every_model_whatever_the_log_says():
    log = FakeChangeLog()
    w = world(log)
    run_reconcile(w.services, fix=False, now=FIRST_AUDIT)
    w.registry.listed.clear()
    report = run_reconcile(w.services, fix=False, now=LATER, full=True)
    assert report.scope.full and sorted(w.registry.listed) == MODELS


def test_the_rate_limit_keeps_to_a_per_minute_budget():
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limit = RateLimit(3, clock=lambda: now[0], sleep=sleep)
    for _ in range(7):
        limit.acquire()
        now[0] += 1.0
    assert limit.calls == 7
    assert waits == [57.0, 57.0]  # the 4th and 7th call wait until the window slides past the 1st and 4th
