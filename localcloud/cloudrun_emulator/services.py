"""The emulated Cloud Run services of one project and location: state, revisions, rollouts and operations.

A change to a service's template creates a revision and starts a rollout: the revision's serving process is
started (see `runtime`) and watched until its model is AVAILABLE, it exits, or it times out. Then the service's
conditions say so, traffic moves to the new process (the old one is stopped), and the operation completes with
the service, as Cloud Run's operations do whether or not the revision became ready. Re-applying an identical
template changes nothing: same generation, same revision. A change of `traffic` alone to another revision
(`revisions`: a rollback) starts that revision's process the same way, without creating a revision.

State is persisted to a JSON file after every change, including which revision serves each service and on which
port, so a restarted emulator starts those revisions again (CONDITION_PENDING and `reconciling` until ready).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from localcloud.cloudrun_emulator import runtime
from localcloud.cloudrun_emulator.revisions import RevisionsAndTraffic, pinned_revision, short_name
from localcloud.cloudrun_emulator.rules import (
    MUTABLE_FIELDS,
    SPEC_FIELDS,
    apply_mask,
    normalize_spec,
    template_changed,
    validate_service_id,
)
from localcloud.emulator import ApiError, EmulatorState, invalid, listing, rfc3339, unsupported, utc_now

log = logging.getLogger(__name__)

SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
MAX_PAGE_SIZE = 1000
MAX_KEPT_OPERATIONS = 300
LOCAL_CLIENT = "registrar-local-cloud-run"

READY, CONFIGURATIONS_READY, ROUTES_READY = "Ready", "ConfigurationsReady", "RoutesReady"
PENDING, RECONCILING = "CONDITION_PENDING", "CONDITION_RECONCILING"
FAILED, SUCCEEDED = "CONDITION_FAILED", "CONDITION_SUCCEEDED"


@dataclass
class Rollout:
    """Starting one revision of a service and waiting for it to serve."""

    service_id: str
    revision: str  # short name, e.g. recs-00002-abc
    template: dict[str, Any]
    operations: list[str] = field(default_factory=list)
    restart: bool = False  # bringing back what served before the emulator restarted
    port_hint: int | None = None
    after_restart: dict[str, Any] | None = None  # the Ready condition to put back once a restarted revision serves
    instance: runtime.Instance | None = None
    switch: bool = False  # moving traffic to an existing revision: no revision is created or made the latest


class CloudRunState(RevisionsAndTraffic, EmulatorState):
    """All services of one project and location. One lock serialises changes; rollouts run in threads."""

    def __init__(self, state_path: str | os.PathLike, project: str, location: str,
                 clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(state_path, project, location, clock)
        self.logs = self.path.parent / "logs"
        self.changed = threading.Condition(self.lock)
        self.closing = threading.Event()
        self.running: dict[str, runtime.Instance] = {}
        self.rollouts: dict[str, Rollout] = {}
        # services: the REST resources; serving: which revision serves each service, on which port, with which
        # template (to start it again after a restart); revisions: every revision name a service has had;
        # revision_resources: the revisions a service still has (`revisions.py`)
        self.data: dict[str, Any] = self.load_data({"services": {}, "serving": {}, "revisions": {},
                                                    "revision_resources": {}, "operations": {}})

    # -- names and persistence ----------------------------------------------------------------------------------

    def service_name(self, service_id: str) -> str:
        return f"{self.parent}/services/{service_id}"

    def revision_name(self, service_id: str, revision: str) -> str:
        return f"{self.service_name(service_id)}/revisions/{revision}"

    def log_path(self, service_id: str) -> Path:
        return self.logs / f"run-{service_id}.log"

    def save(self) -> None:
        self.write_file(self.data, indent=1)

    # -- reads ----------------------------------------------------------------------------------------------------

    def _service(self, service_id: str) -> dict[str, Any]:
        service = self.data["services"].get(service_id)
        if service is None:
            raise ApiError("NOT_FOUND", f"Resource '{self.service_name(service_id)}' does not exist.")
        return service

    def get(self, service_id: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._service(service_id))

    def list(self, page_size: Any, page_token: str | None) -> dict[str, Any]:
        with self.lock:
            items = [copy.deepcopy(s) for _, s in sorted(self.data["services"].items())]
        return listing("services", items, page_size, page_token, max_size=MAX_PAGE_SIZE)

    # -- operations -----------------------------------------------------------------------------------------------

    def operation_name(self, operation_id: str) -> str:
        return f"{self.parent}/operations/{operation_id}"

    def _new_operation(self, service: dict[str, Any]) -> dict[str, Any]:
        operation = {"name": self.operation_name(str(uuid.uuid4())), "done": False,
                     "metadata": {"@type": SERVICE_TYPE, **copy.deepcopy(service)}}
        operations = self.data["operations"]
        operations[operation["name"]] = operation
        while len(operations) > MAX_KEPT_OPERATIONS:  # dicts keep insertion order: drop the oldest
            del operations[next(iter(operations))]
        return operation

    def _finish_operations(self, names: list[str], service: dict[str, Any]) -> None:
        for name in names:
            operation = self.data["operations"].get(name)
            if operation is not None and not operation["done"]:
                snapshot = copy.deepcopy(service)
                operation.update(done=True, metadata={"@type": SERVICE_TYPE, **snapshot},
                                 response={"@type": SERVICE_TYPE, **copy.deepcopy(snapshot)})
        self.changed.notify_all()

    def get_operation(self, operation_id: str) -> dict[str, Any]:
        with self.lock:
            operation = self.data["operations"].get(self.operation_name(operation_id))
            if operation is None:
                raise ApiError("NOT_FOUND", f"Operation '{self.operation_name(operation_id)}' does not exist.")
            return copy.deepcopy(operation)

    def wait_operation(self, operation_id: str, timeout: float | None) -> dict[str, Any]:
        deadline = time.monotonic() + (60.0 if timeout is None else max(0.0, timeout))
        with self.lock:
            while True:
                operation = self.get_operation(operation_id)
                remaining = deadline - time.monotonic()
                if operation["done"] or remaining <= 0 or self.closing.is_set():
                    return operation
                self.changed.wait(min(remaining, 1.0))

    def delete_operation(self, operation_id: str) -> dict[str, Any]:
        with self.lock:
            self.get_operation(operation_id)
            del self.data["operations"][self.operation_name(operation_id)]
            self.save()
            return {}

    def list_operations(self, page_size: Any, page_token: str | None) -> dict[str, Any]:
        with self.lock:
            items = [copy.deepcopy(o) for o in self.data["operations"].values()]
        return listing("operations", items, page_size, page_token, max_size=MAX_PAGE_SIZE)

    # -- create / update / delete ---------------------------------------------------------------------------------

    def create(self, service_id: str, body: dict[str, Any], validate_only: bool = False) -> dict[str, Any]:
        validate_service_id(service_id)
        spec = normalize_spec(body, service_id, self.project)
        with self.lock:
            if service_id in self.data["services"]:
                raise ApiError("ALREADY_EXISTS", f"Resource '{service_id}' already exists.")
            now = rfc3339(self.clock())
            service: dict[str, Any] = {
                "name": self.service_name(service_id), "uid": str(uuid.uuid4()), "generation": "1",
                "createTime": now, "updateTime": now, "creator": LOCAL_CLIENT, "lastModifier": LOCAL_CLIENT,
                **spec, "observedGeneration": "0", "uri": "", "urls": [], "reconciling": True,
            }
            if pinned_revision(service) is not None:
                raise invalid(f"traffic: service '{self.service_name(service_id)}' has no revision yet to send "
                              "traffic to")
            revision = self._revision_for(service_id, service, 1, record=not validate_only)
            service["latestCreatedRevision"] = self.revision_name(service_id, revision)
            self._set_conditions(service, RECONCILING, f"Deploying revision {revision}.", routes=RECONCILING)
            self._stamp(service)
            if validate_only:
                return self._validated(service)
            self.data["services"][service_id] = service
            operation = self._new_operation(service)
            rollout = Rollout(service_id, revision, copy.deepcopy(service["template"]), [operation["name"]])
            self._begin(rollout)
            self.save()
            return copy.deepcopy(self.data["operations"][operation["name"]])

    def update(self, service_id: str, body: dict[str, Any], update_mask: str = "", allow_missing: bool = False,
               validate_only: bool = False) -> dict[str, Any]:
        with self.lock:
            current = self.data["services"].get(service_id)
            if current is None:
                if allow_missing:
                    return self.create(service_id, body, validate_only)
                raise ApiError("NOT_FOUND", f"Resource '{self.service_name(service_id)}' does not exist.")
            etag = body.get("etag")
            if etag and etag != current.get("etag"):
                raise ApiError("ABORTED", f"The etag {etag!r} does not match the service's current etag; read the "
                                          "service again and retry")
            spec = normalize_spec(apply_mask(current, body, update_mask), service_id, self.project)
            service = copy.deepcopy(current)
            for key in MUTABLE_FIELDS:
                service.pop(key, None)
            service.update(spec)
            self.check_traffic(service_id, service)
            spec_changed = any(service.get(k) != current.get(k) for k in SPEC_FIELDS)
            new_revision = template_changed(current["template"], spec["template"])
            if not spec_changed and service == current:
                operation = self._new_operation(current)
                self._finish_operations([operation["name"]], current)
                return copy.deepcopy(operation)
            service["updateTime"] = rfc3339(self.clock())
            service["lastModifier"] = LOCAL_CLIENT
            rollout = None
            if spec_changed:
                generation = int(current["generation"]) + 1
                service["generation"] = str(generation)
                serving_now = self._serving_revision(service_id)
                target = self.wanted_revision(service)
                if new_revision:
                    pinned = pinned_revision(service)
                    if pinned is not None and pinned != serving_now:
                        raise unsupported("the local Cloud Run cannot create a revision and move the traffic to "
                                          "another one in one update: change the traffic in an update of its own")
                    revision = self._revision_for(service_id, service, generation, record=not validate_only)
                    service["latestCreatedRevision"] = self.revision_name(service_id, revision)
                    service["reconciling"] = True
                    self._set_conditions(service, RECONCILING, f"Deploying revision {revision}.",
                                         routes=SUCCEEDED if service_id in self.running else RECONCILING)
                    rollout = Rollout(service_id, revision, copy.deepcopy(service["template"]))
                elif target and target != serving_now:
                    service["reconciling"] = True
                    self._set_conditions(service, RECONCILING, f"Routing traffic to revision {target}.",
                                         routes=RECONCILING)
                    rollout = Rollout(service_id, target, self.revision_template(service_id, target), switch=True)
                elif not service.get("reconciling"):
                    service["observedGeneration"] = service["generation"]
                    service["trafficStatuses"] = self.traffic_statuses(service)
            self._stamp(service)
            if validate_only:
                return self._validated(service)
            self.data["services"][service_id] = service
            operation = self._new_operation(service)
            if rollout is None:
                self._finish_operations([operation["name"]], service)
            else:
                rollout.operations.append(operation["name"])
                self._begin(rollout)
            self.save()
            return copy.deepcopy(self.data["operations"][operation["name"]])

    def delete(self, service_id: str, etag: str = "", validate_only: bool = False) -> dict[str, Any]:
        with self.lock:
            service = copy.deepcopy(self._service(service_id))
            if etag and etag != service.get("etag"):
                raise ApiError("ABORTED", f"The etag {etag!r} does not match the service's current etag")
            service["deleteTime"] = rfc3339(self.clock())
            if validate_only:
                return self._validated(service)
            del self.data["services"][service_id]
            self.data["serving"].pop(service_id, None)
            self.data["revisions"].pop(service_id, None)
            self._forget_revisions(service_id)
            stopping = [r.instance for r in [self.rollouts.pop(service_id, None)] if r and r.instance]
            if service_id in self.running:
                stopping.append(self.running.pop(service_id))
            operation = self._new_operation(service)
            self._finish_operations([operation["name"]], service)
            self.save()
            result = copy.deepcopy(operation)
        for instance in stopping:
            instance.stop()
        return result

    def _validated(self, service: dict[str, Any]) -> dict[str, Any]:
        snapshot = {"@type": SERVICE_TYPE, **copy.deepcopy(service)}
        return {"name": self.operation_name(str(uuid.uuid4())), "done": True, "metadata": snapshot,
                "response": copy.deepcopy(snapshot)}

    def _revision_for(self, service_id: str, service: dict[str, Any], generation: int, record: bool) -> str:
        given = service["template"].get("revision")
        known = self.data["revisions"].get(service_id, [])
        if given:
            if given in known:
                raise ApiError("ALREADY_EXISTS", f"Revision named '{given}' with different configuration already "
                                                 "exists.")
            revision = given
        else:
            alphabet = "abcdefghijklmnopqrstuvwxyz"
            revision = f"{service_id}-{generation:05d}-{''.join(secrets.choice(alphabet) for _ in range(3))}"
        if record:
            self.data["revisions"].setdefault(service_id, []).append(revision)
            self._keep_revision(service_id, revision, service, generation)
        return revision

    def _stamp(self, service: dict[str, Any]) -> None:
        fingerprint = json.dumps({k: v for k, v in service.items() if k != "etag"}, sort_keys=True).encode()
        service["etag"] = '"' + base64.urlsafe_b64encode(hashlib.sha256(fingerprint).digest()[:12]).decode() + '"'

    def _set_conditions(self, service: dict[str, Any], state: str, message: str, *, routes: str | None = None,
                        configurations: str | None = None) -> None:
        now = rfc3339(self.clock())

        def condition(kind: str, new_state: str, text: str, previous: dict[str, Any] | None) -> dict[str, Any]:
            result = {"type": kind, "state": new_state}
            if text:
                result["message"] = text
            if new_state == FAILED:
                result["severity"] = "ERROR"
            changed = previous is None or previous.get("state") != new_state
            result["lastTransitionTime"] = now if changed else previous.get("lastTransitionTime", now)
            return result

        existing = {c["type"]: c for c in service.get("conditions", [])}
        service["terminalCondition"] = condition(READY, state, message, service.get("terminalCondition"))
        configurations_state = configurations or state
        routes_state = routes or state
        service["conditions"] = [
            condition(ROUTES_READY, routes_state, "", existing.get(ROUTES_READY)),
            condition(CONFIGURATIONS_READY, configurations_state, message if configurations_state == FAILED else "",
                      existing.get(CONFIGURATIONS_READY)),
        ]

    # -- rollouts -------------------------------------------------------------------------------------------------

    def _begin(self, rollout: Rollout) -> None:
        """Start the revision's process and a thread watching it (called with the lock held)."""
        superseded = self.rollouts.pop(rollout.service_id, None)
        if superseded is not None:
            rollout.operations = superseded.operations + rollout.operations
            if superseded.instance is not None:
                threading.Thread(target=superseded.instance.stop, daemon=True).start()
        container = rollout.template["containers"][0]
        env = {v["name"]: v.get("value", "") for v in container.get("env", [])}
        env.update(K_SERVICE=rollout.service_id, K_REVISION=rollout.revision, K_CONFIGURATION=rollout.service_id)
        busy = {i.port for i in self.running.values()} | {r.instance.port for r in self.rollouts.values()
                                                          if r.instance}
        hint = rollout.port_hint if rollout.port_hint not in busy else None
        port = runtime.free_port(hint)
        try:
            launch = runtime.plan(container["image"], env, port)
            rollout.instance = runtime.Instance(rollout.service_id, rollout.revision, port, launch,
                                                self.log_path(rollout.service_id))
        except (runtime.CannotRun, OSError) as exc:
            self._failed(rollout, str(exc))
            return
        self.rollouts[rollout.service_id] = rollout
        threading.Thread(target=self._watch, args=(rollout,), name=f"rollout-{rollout.revision}", daemon=True).start()

    def _watch(self, rollout: Rollout) -> None:
        instance = rollout.instance
        assert instance is not None
        timeout = runtime.start_timeout()
        deadline = time.monotonic() + timeout
        while not self.closing.is_set():
            with self.lock:
                if self.rollouts.get(rollout.service_id) is not rollout:
                    return  # superseded or deleted: whoever did that stops the process
            if instance.ready():
                self._served(rollout)
                return
            if not instance.alive():
                self._failed(rollout, f"The serving process exited with code {instance.process.returncode} before "
                                      f"its model was AVAILABLE on PORT={instance.port}.", instance)
                return
            if time.monotonic() > deadline:
                self._failed(rollout, f"The serving process did not report its model AVAILABLE on "
                                      f"PORT={instance.port} within {timeout:.0f}s "
                                      f"(set {runtime.START_TIMEOUT_ENV} to wait longer).", instance)
                return
            self.closing.wait(0.25)

    def _served(self, rollout: Rollout) -> None:
        instance = rollout.instance
        assert instance is not None
        with self.lock:
            service = self.data["services"].get(rollout.service_id)
            if self.rollouts.get(rollout.service_id) is not rollout or service is None:
                return
            del self.rollouts[rollout.service_id]
            if not rollout.switch:
                self._revision_outcome(rollout.service_id, rollout.revision, True)
                service["latestReadyRevision"] = self.revision_name(rollout.service_id, rollout.revision)
            if self.wanted_revision(service) != rollout.revision:
                self._ready_without_traffic(rollout, service)
                instance.stop()
                return
            previous = self.running.get(rollout.service_id)
            self.running[rollout.service_id] = instance
            service.update(uri=instance.uri, urls=[instance.uri], reconciling=False,
                           trafficStatuses=self.traffic_statuses(service),
                           observedGeneration=service["generation"])
            restored = rollout.after_restart
            if restored and restored.get("state") == FAILED:
                # a newer revision had failed before the restart: the restarted one serves, Ready stays as it was
                self._set_conditions(service, FAILED, restored.get("message", ""), routes=SUCCEEDED)
            else:
                self._set_conditions(service, SUCCEEDED, instance.note)
            self.data["serving"][rollout.service_id] = {"revision": rollout.revision, "port": instance.port,
                                                        "template": rollout.template}
            self._stamp(service)
            self._finish_operations(rollout.operations, service)
            self.save()
        log.info("%s: revision %s serves at %s", rollout.service_id, rollout.revision, instance.uri)
        if previous is not None and previous is not instance:
            previous.stop()

    def _ready_without_traffic(self, rollout: Rollout, service: dict[str, Any]) -> None:
        """A new revision became ready while the traffic is pinned to another one: it stays without traffic."""
        service.update(reconciling=False, observedGeneration=service["generation"])
        self._set_conditions(service, SUCCEEDED, f"Revision {rollout.revision} is ready; the traffic stays on "
                                                 f"revision {pinned_revision(service)}.")
        self._stamp(service)
        self._finish_operations(rollout.operations, service)
        self.save()
        log.info("%s: revision %s is ready without traffic", rollout.service_id, rollout.revision)

    def _serving_revision(self, service_id: str) -> str | None:
        """The revision whose process serves the service now (or served it before the emulator restarted)."""
        instance = self.running.get(service_id)
        if instance is not None:
            return instance.revision
        return (self.data["serving"].get(service_id) or {}).get("revision")

    def _failed(self, rollout: Rollout, reason: str, instance: runtime.Instance | None = None) -> None:
        tail = instance.log_tail() if instance is not None else ""
        if instance is not None:
            instance.stop()
        with self.lock:
            service = self.data["services"].get(rollout.service_id)
            # a rollout whose process never started was not registered; any other must still be the current one
            started = rollout.instance is not None
            if service is None or (started and self.rollouts.get(rollout.service_id) is not rollout):
                return
            if started:
                del self.rollouts[rollout.service_id]
            serving = self.running.get(rollout.service_id)
            message = f"Revision '{rollout.revision}' is not ready and cannot serve traffic. {reason}"
            if not rollout.switch and not rollout.restart:
                self._revision_outcome(rollout.service_id, rollout.revision, False, message)
            if instance is not None:
                message += f" Logs: {instance.log_path}"
                if tail:
                    message += f"\n{tail}"
            if serving is not None:
                message += f"\nTraffic stays on revision '{serving.revision}'."
            else:
                service.update(uri="", urls=[], trafficStatuses=[])
                if rollout.restart:
                    self.data["serving"].pop(rollout.service_id, None)
            service.update(reconciling=False, observedGeneration=service["generation"])
            self._set_conditions(service, FAILED, message, routes=SUCCEEDED if serving else FAILED)
            self._stamp(service)
            self._finish_operations(rollout.operations, service)
            self.save()
        log.warning("%s: %s", rollout.service_id, message)

    # -- restart and shutdown -------------------------------------------------------------------------------------

    def restore(self) -> None:
        """Start again what served (or was being rolled out) when the emulator last stopped."""
        with self.lock:
            pending_ops: dict[str, list[str]] = {}
            for name, operation in self.data["operations"].items():
                if not operation["done"]:
                    service_id = operation["metadata"]["name"].rsplit("/", 1)[-1]
                    pending_ops.setdefault(service_id, []).append(name)
            for service_id, service in sorted(self.data["services"].items()):
                serving = self.data["serving"].get(service_id)
                latest = short_name(service.get("latestCreatedRevision", ""))
                pinned = pinned_revision(service)
                if service.get("reconciling") and pinned is not None and pinned != (serving or {}).get("revision"):
                    rollout = Rollout(service_id, pinned, self.revision_template(service_id, pinned),
                                      pending_ops.get(service_id, []), restart=True, switch=True,
                                      port_hint=(serving or {}).get("port"))
                elif service.get("reconciling") or (serving is None and service["terminalCondition"]["state"]
                                                    != FAILED):
                    rollout = Rollout(service_id, latest, copy.deepcopy(service["template"]),
                                      pending_ops.get(service_id, []), restart=True,
                                      port_hint=(serving or {}).get("port"))
                elif serving is not None:
                    rollout = Rollout(service_id, serving["revision"], copy.deepcopy(serving["template"]),
                                      pending_ops.get(service_id, []), restart=True, port_hint=serving["port"],
                                      after_restart=copy.deepcopy(service["terminalCondition"]), switch=True)
                else:
                    continue  # its only revision failed: nothing to start
                service.update(reconciling=True, uri="", urls=[], trafficStatuses=[])
                self._set_conditions(service, PENDING, f"Restarting revision {rollout.revision} after the local "
                                                       "Cloud Run restarted.")
                self._stamp(service)
                log.info("%s: restarting revision %s", service_id, rollout.revision)
                self._begin(rollout)
            self.save()

    def close(self) -> None:
        """Stop every serving process (the emulator is stopping)."""
        self.closing.set()
        with self.lock:
            instances = list(self.running.values()) + [r.instance for r in self.rollouts.values() if r.instance]
            self.running.clear()
            self.rollouts.clear()
            self.changed.notify_all()
        for instance in instances:
            instance.stop(timeout=5.0)

    def processes(self) -> list[dict[str, Any]]:
        """What runs now (for `/emulator/processes`, and tests)."""
        with self.lock:
            rows = [{"service": i.service_id, "revision": i.revision, "pid": i.pid, "port": i.port,
                     "state": "serving"} for i in self.running.values()]
            rows += [{"service": r.service_id, "revision": r.revision, "pid": r.instance.pid,
                      "port": r.instance.port, "state": "starting"} for r in self.rollouts.values() if r.instance]
            return rows
