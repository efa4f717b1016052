"""Revisions and traffic of the emulated Cloud Run.

Every revision a service creates is kept as a resource of `projects.locations.services.revisions` (get, list,
delete, in the v2 REST shape) with the template it runs and whether it became ready. A service's `traffic` sends
all of it either to the latest ready revision (the default) or to one named revision, which must exist and be
ready: moving it there starts that revision's serving process again (no new revision, no new generation of the
template), as a rollback on Cloud Run moves traffic back to a revision it still has. A revision that serves traffic
cannot be deleted.

`RevisionsAndTraffic` is mixed into `services.CloudRunState`, whose lock guards `data`.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from localcloud.cloudrun_emulator.rules import LATEST, REVISION
from localcloud.emulator import ApiError, invalid, listing, rfc3339

REVISION_TYPE = "type.googleapis.com/google.cloud.run.v2.Revision"
READY, SUCCEEDED, FAILED, RECONCILING = "Ready", "CONDITION_SUCCEEDED", "CONDITION_FAILED", "CONDITION_RECONCILING"
MAX_PAGE_SIZE = 1000


def short_name(revision: str) -> str:
    return revision.rsplit("/", 1)[-1]


def pinned_revision(service: dict[str, Any]) -> str | None:
    """The revision a service's traffic names, or None when it follows the latest ready revision."""
    targets = service.get("traffic") or []
    if len(targets) == 1 and targets[0].get("type") == REVISION:
        return targets[0]["revision"]
    return None


class RevisionsAndTraffic:
    """What `CloudRunState` adds for revisions and traffic (its `data`, `lock`, `clock` and names)."""

    data: dict[str, Any]

    # -- the records ----------------------------------------------------------------------------------------------

    def _records(self, service_id: str) -> dict[str, dict[str, Any]]:
        return self.data.setdefault("revision_resources", {}).setdefault(service_id, {})

    def _keep_revision(self, service_id: str, revision: str, service: dict[str, Any], generation: int) -> None:
        now = rfc3339(self.clock())
        self._records(service_id)[revision] = {
            "template": copy.deepcopy(service["template"]), "generation": generation, "uid": str(uuid.uuid4()),
            "createTime": now, "updateTime": now, "state": RECONCILING, "message": "",
        }

    def _revision_outcome(self, service_id: str, revision: str, ready: bool, message: str = "") -> None:
        record = self._records(service_id).get(revision)
        if record is not None and record["state"] != SUCCEEDED:  # a revision that once served stays ready
            record.update(state=SUCCEEDED if ready else FAILED, message=message,
                          updateTime=rfc3339(self.clock()))

    def _forget_revisions(self, service_id: str) -> None:
        self.data.setdefault("revision_resources", {}).pop(service_id, None)

    def revision_template(self, service_id: str, revision: str) -> dict[str, Any] | None:
        record = self._records(service_id).get(revision)
        return copy.deepcopy(record["template"]) if record else None

    # -- traffic --------------------------------------------------------------------------------------------------

    def check_traffic(self, service_id: str, service: dict[str, Any]) -> None:
        """A named revision must be one of the service's, and ready."""
        revision = pinned_revision(service)
        if revision is None:
            return
        record = self._records(service_id).get(revision)
        if record is None:
            raise invalid(f"traffic: revision '{revision}' is not a revision of service "
                          f"'{self.service_name(service_id)}'")
        if record["state"] != SUCCEEDED:
            raise ApiError("FAILED_PRECONDITION", f"traffic: revision '{revision}' is not ready and cannot serve "
                                                  "traffic")

    def traffic_statuses(self, service: dict[str, Any]) -> list[dict[str, Any]]:
        revision = pinned_revision(service)
        if revision is not None:
            return [{"type": REVISION, "revision": revision, "percent": 100}]
        return [{"type": LATEST, "percent": 100}]

    def wanted_revision(self, service: dict[str, Any]) -> str:
        """The revision that should serve the service's traffic now (short name; "" when none is ready)."""
        return pinned_revision(service) or short_name(service.get("latestReadyRevision") or "")

    # -- the API --------------------------------------------------------------------------------------------------

    def _resource(self, service_id: str, revision: str) -> dict[str, Any]:
        record = self._records(service_id)[revision]
        template = record["template"]
        condition = {"type": READY, "state": record["state"], "lastTransitionTime": record["updateTime"]}
        if record["message"]:
            condition["message"] = record["message"]
        if record["state"] == FAILED:
            condition["severity"] = "ERROR"
        resource = {
            "name": self.revision_name(service_id, revision), "uid": record["uid"],
            "generation": str(record["generation"]), "createTime": record["createTime"],
            "updateTime": record["updateTime"], "launchStage": "GA", "service": self.service_name(service_id),
            "reconciling": record["state"] == RECONCILING, "conditions": [condition],
            "observedGeneration": str(record["generation"]),
            **{k: copy.deepcopy(v) for k, v in template.items() if k != "revision"},
        }
        resource["etag"] = f'"{record["uid"][:8]}-{record["state"]}"'
        return resource

    def _known(self, service_id: str, revision: str) -> None:
        if service_id not in self.data["services"] or revision not in self._records(service_id):
            raise ApiError("NOT_FOUND", f"Resource '{self.revision_name(service_id, revision)}' does not exist.")

    def get_revision(self, service_id: str, revision: str) -> dict[str, Any]:
        with self.lock:
            self._known(service_id, revision)
            return self._resource(service_id, revision)

    def list_revisions(self, service_id: str, page_size: Any, page_token: str | None) -> dict[str, Any]:
        with self.lock:
            if service_id not in self.data["services"]:
                raise ApiError("NOT_FOUND", f"Resource '{self.service_name(service_id)}' does not exist.")
            records = self._records(service_id)
            newest_first = sorted(records, key=lambda r: (records[r]["generation"], r), reverse=True)
            items = [self._resource(service_id, r) for r in newest_first]
        return listing("revisions", items, page_size, page_token, max_size=MAX_PAGE_SIZE)

    def delete_revision(self, service_id: str, revision: str, validate_only: bool = False) -> dict[str, Any]:
        """Cloud Run keeps the revision that serves traffic (and the one being rolled out)."""
        with self.lock:
            self._known(service_id, revision)
            service = self.data["services"][service_id]
            serving = (self.data["serving"].get(service_id) or {}).get("revision")
            rolling = self.rollouts.get(service_id)
            if revision in (self.wanted_revision(service), serving, rolling.revision if rolling else None):
                raise ApiError("FAILED_PRECONDITION", f"Revision '{revision}' serves traffic of service "
                                                      f"'{self.service_name(service_id)}' and cannot be deleted.")
            resource = {**self._resource(service_id, revision), "deleteTime": rfc3339(self.clock())}
            operation = {"name": self.operation_name(str(uuid.uuid4())), "done": True,
                         "metadata": {"@type": REVISION_TYPE, **resource},
                         "response": {"@type": REVISION_TYPE, **copy.deepcopy(resource)}}
            if validate_only:
                return operation
            del self._records(service_id)[revision]
            self.data["operations"][operation["name"]] = operation
            self.save()
            return copy.deepcopy(operation)
