"""The emulated Model Registry: state, Vertex AI's rules, and the audit entries each change produces.

Resources are kept in the JSON shape the v1 REST API returns (camelCase), so responses are the stored dicts.
"""

from __future__ import annotations

import copy
import os
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from localcloud import auditlog
from localcloud.emulator import ApiError, EmulatorState, invalid, listing, utc_now

ALIAS_RE = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]$")
MODEL_ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
MAX_LABELS = 64
DEFAULT_ALIAS = "default"
MAX_PAGE_SIZE = 1000
MAX_KEPT_OPERATIONS = 10_000

UPLOAD_RESPONSE_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse"
UPLOAD_METADATA_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelOperationMetadata"
DELETE_METADATA_TYPE = "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"

# Fields of an uploaded Model the emulator keeps as given; everything else in the request is output-only or unused.
UPLOADED_FIELDS = ("displayName", "description", "versionDescription", "artifactUri", "labels", "containerSpec",
                   "metadataSchemaUri", "metadata", "predictSchemata")


def validate_labels(labels: Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise invalid("labels must be a map of strings")
    if len(labels) > MAX_LABELS:
        raise invalid(f"at most {MAX_LABELS} labels are allowed, got {len(labels)}")
    for key, value in labels.items():
        if not isinstance(key, str) or not LABEL_KEY_RE.match(key):
            raise invalid(f"label key {key!r} is invalid: 1-63 characters, lowercase letters, digits, '_' or '-', "
                          "starting with a lowercase letter")
        if not isinstance(value, str) or not LABEL_VALUE_RE.match(value):
            raise invalid(f"label value {value!r} of key {key!r} is invalid: at most 63 characters, "
                          "lowercase letters, digits, '_' or '-'")
    return dict(labels)


def validate_alias(alias: str) -> None:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise invalid(f"version alias {alias!r} is invalid: it must match [a-z][a-zA-Z0-9-]{{0,126}}[a-z0-9]")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def parse_filter(expression: str) -> list[tuple[str, str]]:
    """`display_name="x" AND labels.k="v"` → [("display_name", "x"), ("labels.k", "v")]."""
    terms: list[tuple[str, str]] = []
    if not expression.strip():
        return terms
    for term in re.split(r"\s+AND\s+", expression.strip(), flags=re.IGNORECASE):
        match = re.fullmatch(r'\s*([A-Za-z_][\w.-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s"]+))\s*', term)
        if not match:
            raise invalid(f"unsupported filter term {term!r}")
        key = match.group(1)
        value = match.group(2) if match.group(2) is not None else match.group(3)
        if key not in ("display_name", "displayName") and not key.startswith("labels."):
            raise invalid(f"unsupported filter field {key!r}: use display_name or labels.<key>")
        terms.append(("display_name" if key == "displayName" else key, value.replace('\\"', '"')))
    return terms


def matches(resource: dict[str, Any], terms: list[tuple[str, str]]) -> bool:
    for key, value in terms:
        if key == "display_name":
            if resource.get("displayName") != value:
                return False
        elif resource.get("labels", {}).get(key.removeprefix("labels.")) != value:
            return False
    return True


class ModelRegistryState(EmulatorState):
    """All models of one project and location, persisted to a JSON file after every change.

    Every mutating method returns `(result, audit_entries)`; the caller publishes the entries once the change is
    on disk.
    """

    def __init__(self, state_path: str | os.PathLike, project: str, location: str,
                 clock: Callable[[], datetime] = utc_now) -> None:
        super().__init__(state_path, project, location, clock)
        self.data: dict[str, Any] = self.load_data({"models": {}, "operations": {}, "nextOperation": 1})

    # -- names --------------------------------------------------------------------------------------------------

    def model_name(self, model_id: str) -> str:
        return f"{self.parent}/models/{model_id}"

    # -- persistence --------------------------------------------------------------------------------------------

    def save(self) -> None:
        self.write_file(self.data, separators=(",", ":"))

    # -- lookups ------------------------------------------------------------------------------------------------

    def _model(self, model_id: str) -> dict[str, Any]:
        model = self.data["models"].get(model_id)
        if model is None:
            raise ApiError("NOT_FOUND", f'The Model "{self.model_name(model_id)}" does not exist.')
        return model

    def _resolve(self, ref: str, *, require_version: bool = False) -> tuple[str, dict[str, Any], str]:
        """`id`, `id@versionId` or `id@alias` → (model id, model record, version id)."""
        model_id, sep, version_ref = ref.partition("@")
        if require_version and not (sep and version_ref):
            raise invalid(f"{self.model_name(model_id)}: the version must be given explicitly (…/models/ID@VERSION)")
        model = self._model(model_id)
        versions = model["versions"]
        if not version_ref:
            version_ref = DEFAULT_ALIAS
        if version_ref in versions:
            return model_id, model, version_ref
        for version_id, record in versions.items():
            if version_ref in record["resource"]["versionAliases"]:
                return model_id, model, version_id
        raise ApiError("NOT_FOUND", f'The Model "{self.model_name(model_id)}@{version_ref}" does not exist.')

    def _render(self, model: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
        """A version as the API returns it: the model's own labels merged into the version's (a key the version
        holds keeps the version's value), as google.cloud.aiplatform.v1.UpdateModelRequest describes."""
        resource = copy.deepcopy(record["resource"])
        resource["labels"] = {**model.get("labels", {}), **resource["labels"]}
        if record.get("deployed"):
            resource["deployedModels"] = [{"endpoint": f"{self.parent}/endpoints/local",
                                           "deployedModelId": record["resource"]["versionId"]}]
        return resource

    def get(self, ref: str) -> dict[str, Any]:
        with self.lock:
            _, model, version_id = self._resolve(ref)
            return self._render(model, model["versions"][version_id])

    def _default_version(self, model: dict[str, Any]) -> dict[str, Any]:
        for record in model["versions"].values():
            if DEFAULT_ALIAS in record["resource"]["versionAliases"]:
                return record
        return next(iter(model["versions"].values()))

    def list_models(self, filter_expr: str, page_size: Any, page_token: str | None) -> dict[str, Any]:
        with self.lock:
            terms = parse_filter(filter_expr or "")
            rows = [self._render(m, self._default_version(m)) for m in self.data["models"].values()]
            return listing("models", [r for r in rows if matches(r, terms)], page_size, page_token,
                           max_size=MAX_PAGE_SIZE)

    def list_versions(self, ref: str, filter_expr: str, page_size: Any, page_token: str | None) -> dict[str, Any]:
        with self.lock:
            model_id, _, version = ref.partition("@")
            if version:
                raise invalid("listVersions takes the model name without a version")
            model = self._model(model_id)
            terms = parse_filter(filter_expr or "")
            rows = [self._render(model, r) for _, r in sorted(model["versions"].items(), key=lambda kv: int(kv[0]))]
            return listing("models", [r for r in rows if matches(r, terms)], page_size, page_token,
                           max_size=MAX_PAGE_SIZE)

    def get_operation(self, name: str) -> dict[str, Any]:
        with self.lock:
            operation = self.data["operations"].get(name)
            if operation is None:
                raise ApiError("NOT_FOUND", f'The Operation "{name}" does not exist.')
            return copy.deepcopy(operation)

    # -- changes ------------------------------------------------------------------------------------------------

    def _new_operation(self, model_id: str, metadata_type: str, at: datetime) -> tuple[str, str, dict[str, Any]]:
        operation_id = str(self.data["nextOperation"])
        self.data["nextOperation"] += 1
        name = f"{self.model_name(model_id)}/operations/{operation_id}"
        ts = auditlog.rfc3339(at)
        operation = {"name": name,
                     "metadata": {"@type": metadata_type, "genericMetadata": {"createTime": ts, "updateTime": ts}}}
        return operation_id, name, operation

    def _finish_operation(self, name: str, operation: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
        done = {**operation, "done": True, "response": response}
        operations = self.data["operations"]
        operations[name] = done
        while len(operations) > MAX_KEPT_OPERATIONS:  # dicts keep insertion order: drop the oldest
            del operations[next(iter(operations))]
        return copy.deepcopy(done)

    def upload(self, body: dict[str, Any], namespace: str = "v1") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """UploadModel: the operation and its audit entries. The operation finishes at once, unless uploads are
        held (`hold_uploads`): then it runs — only its `first` entry is logged, `get_operation` answers not done,
        the version does not exist yet — until they are released."""
        with self.lock:
            model_id = self._check_upload(body)
            started = self.clock()
            operation_id, op_name, operation = self._new_operation(model_id, UPLOAD_METADATA_TYPE, started)
            self.data["operations"][op_name] = operation
            pending = {"name": op_name, "operationId": operation_id, "body": copy.deepcopy(body),
                       "namespace": namespace, "modelId": model_id, "started": auditlog.rfc3339(started)}
            first = self._upload_entries(pending, "")[0]
            if self.data.get("holdUploads"):
                self.data.setdefault("pendingUploads", []).append(pending)
                self.save()
                return copy.deepcopy(operation), [first]
            done, last = self._complete_upload(pending)
            self.save()
            return done, [first, last]

    def hold_uploads(self, hold: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Hold the uploads started from now on (they run until released), or release them: each held operation
        finishes, in the order they started, and logs its `last` entry."""
        with self.lock:
            self.data["holdUploads"] = bool(hold)
            released, entries = [], []
            if not hold:
                for pending in self.data.pop("pendingUploads", []):
                    done, last = self._complete_upload(pending)
                    released.append(done["name"])
                    entries.append(last)
            self.save()
            return {"held": bool(hold), "released": released}, entries

    def _check_upload(self, body: dict[str, Any]) -> str:
        """Validate an UploadModel request (a refusal is the call's error, before any operation); the model id."""
        model_in = body.get("model")
        if not isinstance(model_in, dict):
            raise invalid("model is required")
        if not model_in.get("displayName"):
            raise invalid("model.displayName is required")
        validate_labels(model_in.get("labels"))
        for alias in model_in.get("versionAliases") or []:
            validate_alias(alias)
        parent_model = body.get("parentModel") or ""
        requested_id = body.get("modelId") or ""
        if parent_model:
            prefix = f"{self.parent}/models/"
            if not parent_model.startswith(prefix) or "@" in parent_model:
                raise invalid(f"parentModel {parent_model!r} is not a model of {self.parent}")
            model_id = parent_model.removeprefix(prefix)
            if requested_id and requested_id != model_id:
                raise invalid("modelId and parentModel name different models")
            self._model(model_id)
            return model_id
        if requested_id:
            if not MODEL_ID_RE.match(requested_id):
                raise invalid(f"modelId {requested_id!r} is invalid: up to 63 characters of [a-z0-9_-], "
                              "not starting with a digit or '-'")
            if requested_id in self.data["models"]:
                raise ApiError("ALREADY_EXISTS", f'The Model "{self.model_name(requested_id)}" already '
                               "exists; upload a new version with parentModel.")
            return requested_id
        return self._generate_model_id()

    def _complete_upload(self, pending: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Create the version an upload operation uploads; (the finished operation, its `last` entry)."""
        body, model_id = pending["body"], pending["modelId"]
        model_in = body["model"]
        started = pending["started"]
        operation = self.data["operations"][pending["name"]]
        if body.get("parentModel"):
            model = self.data["models"].get(model_id)
            if model is None:
                return self._fail_upload(pending, operation, 5, f'The Model "{self.model_name(model_id)}" does not '
                                                                "exist (it was deleted while the upload ran).")
        else:
            if model_id in self.data["models"]:
                return self._fail_upload(pending, operation, 6, f'The Model "{self.model_name(model_id)}" already '
                                                                "exists.")
            model = {"createTime": started, "nextVersion": 1, "versions": {}, "labels": {}}
            self.data["models"][model_id] = model
        version_id = str(model["nextVersion"])
        model["nextVersion"] += 1
        aliases = list(dict.fromkeys(model_in.get("versionAliases") or []))
        if not model["versions"] and DEFAULT_ALIAS not in aliases:
            aliases.append(DEFAULT_ALIAS)
        resource: dict[str, Any] = {k: copy.deepcopy(model_in[k]) for k in UPLOADED_FIELDS if k in model_in}
        resource.update({
            "name": self.model_name(model_id),
            "labels": validate_labels(model_in.get("labels")),
            "versionId": version_id,
            "versionAliases": [],
            "createTime": model["createTime"],
            "updateTime": started,
            "versionCreateTime": started,
            "versionUpdateTime": started,
        })
        resource.setdefault("artifactUri", "")
        resource.setdefault("containerSpec", {})
        model["versions"][version_id] = {"resource": resource, "deployed": False}
        self._move_aliases(model, version_id, aliases, started)
        done = self._finish_operation(pending["name"], operation, {
            "@type": UPLOAD_RESPONSE_TYPE, "model": self.model_name(model_id), "modelVersionId": version_id})
        return done, self._upload_entries(pending, version_id)[1]

    def _fail_upload(self, pending, operation, code: int, message: str) -> tuple[dict[str, Any], dict[str, Any]]:
        done = {**operation, "done": True, "error": {"code": code, "message": message}}
        self.data["operations"][pending["name"]] = done
        last = self._upload_entries(pending, "")[1]
        last["protoPayload"].pop("response", None)
        last["protoPayload"]["status"] = {"code": code, "message": message}
        return copy.deepcopy(done), last

    def _upload_entries(self, pending: dict[str, Any], version_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        body = pending["body"]
        model_in = body["model"]
        return auditlog.upload_model_entries(
            project=self.project, location=self.location, model_id=pending["modelId"], version_id=version_id,
            display_name=model_in["displayName"], artifact_uri=model_in.get("artifactUri", ""),
            labels=dict(model_in.get("labels") or {}), started_at=_parse_time(pending["started"]),
            finished_at=self.clock(), operation_id=pending["operationId"], parent_model=bool(body.get("parentModel")),
            version_aliases=list(model_in.get("versionAliases") or []),
            container_image=(model_in.get("containerSpec") or {}).get("imageUri", ""), namespace=pending["namespace"],
        )

    def _generate_model_id(self) -> str:
        while True:
            candidate = str(secrets.randbelow(9 * 10**18) + 10**18)
            if candidate not in self.data["models"]:
                return candidate

    def _move_aliases(self, model: dict[str, Any], version_id: str, aliases: list[str], ts: str) -> None:
        """Give `aliases` to `version_id`, taking each from whichever version holds it now."""
        target = model["versions"][version_id]["resource"]
        for alias in aliases:
            for other_id, record in model["versions"].items():
                held = record["resource"]["versionAliases"]
                if other_id != version_id and alias in held:
                    held.remove(alias)
                    record["resource"]["versionUpdateTime"] = record["resource"]["updateTime"] = ts
            if alias not in target["versionAliases"]:
                target["versionAliases"].append(alias)
                target["versionUpdateTime"] = target["updateTime"] = ts

    def merge_aliases(self, ref: str, body: dict[str, Any], namespace: str = "v1") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        with self.lock:
            requested = body.get("versionAliases")
            if not isinstance(requested, list) or not requested:
                raise invalid("versionAliases is required")
            adds: list[str] = []
            removes: list[str] = []
            for item in requested:
                if not isinstance(item, str):
                    raise invalid(f"version alias {item!r} is not a string")
                removing = item.startswith("-")
                alias = item[1:] if removing else item
                validate_alias(alias)
                if removing and alias == DEFAULT_ALIAS:
                    raise invalid("the default alias cannot be removed; add it to another version to move it")
                (removes if removing else adds).append(alias)
            cancelled = set(adds) & set(removes)
            adds = [a for a in dict.fromkeys(adds) if a not in cancelled]
            removes = [a for a in dict.fromkeys(removes) if a not in cancelled]
            model_id, model, version_id = self._resolve(ref, require_version=True)
            at = self.clock()
            ts = auditlog.rfc3339(at)
            self._move_aliases(model, version_id, adds, ts)
            resource = model["versions"][version_id]["resource"]
            for alias in removes:
                if alias in resource["versionAliases"]:
                    resource["versionAliases"].remove(alias)
                    resource["versionUpdateTime"] = resource["updateTime"] = ts
            entry = auditlog.merge_version_aliases_entry(
                project=self.project, location=self.location, model_id=model_id, version_id=version_id,
                aliases=list(requested), at=at, resulting_aliases=list(resource["versionAliases"]),
                namespace=namespace)
            self.save()
            return self._render(model, model["versions"][version_id]), [entry]

    def update(self, ref: str, update_mask: str, body: dict[str, Any], namespace: str = "v1") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """UpdateModel. `models/M@V` (or `@alias`) updates that version; `models/M` or `models/M@-` updates the
        model itself, whose labels every version returns merged with its own (UpdateModelRequest)."""
        with self.lock:
            paths = [p.strip() for p in (update_mask or "").split(",") if p.strip()]
            if not paths:
                raise invalid("updateMask is required")
            unsupported = [p for p in paths if p not in ("labels", "displayName", "display_name", "description")]
            if unsupported:
                raise invalid(f"updateMask paths {unsupported} are not supported by this emulator")
            labels = validate_labels(body.get("labels")) if "labels" in paths else None
            for path in paths:
                if path in ("displayName", "display_name") and not body.get("displayName"):
                    raise invalid("displayName must not be empty")
            model_id, sep, reference = ref.partition("@")
            at = self.clock()
            ts = auditlog.rfc3339(at)
            if not sep or reference == "-":
                model = self._model(model_id)
                if labels is not None:
                    model["labels"] = labels
                for record in model["versions"].values():  # display name and description are the model's
                    resource = record["resource"]
                    if "displayName" in paths or "display_name" in paths:
                        resource["displayName"] = body["displayName"]
                    if "description" in paths:
                        resource["description"] = body.get("description", "")
                    resource["updateTime"] = ts
                returned = self._render(model, self._default_version(model))
                entry = auditlog.update_model_entry(
                    project=self.project, location=self.location, model_id=model_id,
                    version_id=returned["versionId"], labels=dict(model.get("labels", {})), at=at,
                    namespace=namespace, reference=reference if sep else "", response_labels=returned["labels"])
                self.save()
                return returned, [entry]
            model_id, model, version_id = self._resolve(ref)
            resource = model["versions"][version_id]["resource"]
            if labels is not None:
                resource["labels"] = labels
            for path in paths:
                if path in ("displayName", "display_name"):
                    resource["displayName"] = body["displayName"]
                elif path == "description":
                    resource["description"] = body.get("description", "")
            resource["versionUpdateTime"] = resource["updateTime"] = ts
            returned = self._render(model, model["versions"][version_id])
            entry = auditlog.update_model_entry(project=self.project, location=self.location, model_id=model_id,
                                                version_id=version_id, labels=dict(resource["labels"]), at=at,
                                                namespace=namespace, reference=reference,
                                                response_labels=returned["labels"])
            self.save()
            return returned, [entry]

    def delete_version(self, ref: str, namespace: str = "v1") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        with self.lock:
            model_id, model, version_id = self._resolve(ref, require_version=True)
            self._check_deletable_version(model_id, model, version_id)
            at = self.clock()
            del model["versions"][version_id]
            operation_id, op_name, operation = self._new_operation(model_id, DELETE_METADATA_TYPE, at)
            done = self._finish_operation(op_name, operation, {"@type": EMPTY_TYPE})
            entries = auditlog.delete_model_version_entries(
                project=self.project, location=self.location, model_id=model_id, version_id=version_id, at=at,
                operation_id=operation_id, namespace=namespace, finished_at=self.clock())
            self.save()
            return done, list(entries)

    def _check_deletable_version(self, model_id: str, model: dict[str, Any], version_id: str) -> None:
        record = model["versions"][version_id]
        name = f"{self.model_name(model_id)}@{version_id}"
        if record.get("deployed"):
            raise ApiError("FAILED_PRECONDITION", f"Model version {name} is deployed to an endpoint; "
                           "undeploy it before deleting it.")
        if len(model["versions"]) == 1:
            raise ApiError("FAILED_PRECONDITION", f"{name} is the only version of the model; deleting the only "
                           "version is not allowed, delete the model instead.")
        if DEFAULT_ALIAS in record["resource"]["versionAliases"]:
            raise ApiError("FAILED_PRECONDITION", f"{name} is the default version and cannot be deleted; "
                           "move the default alias to another version first.")

    def delete_model(self, ref: str, namespace: str = "v1") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        with self.lock:
            model_id, _, version = ref.partition("@")
            if version:
                raise invalid("DeleteModel takes the model name without a version; use deleteVersion")
            model = self._model(model_id)
            deployed = [v for v, r in model["versions"].items() if r.get("deployed")]
            if deployed:
                raise ApiError("FAILED_PRECONDITION", f"Model {self.model_name(model_id)} has versions deployed to "
                               f"endpoints ({', '.join(deployed)}); undeploy them before deleting the model.")
            at = self.clock()
            del self.data["models"][model_id]
            operation_id, op_name, operation = self._new_operation(model_id, DELETE_METADATA_TYPE, at)
            done = self._finish_operation(op_name, operation, {"@type": EMPTY_TYPE})
            entries = auditlog.delete_model_entries(project=self.project, location=self.location, model_id=model_id,
                                                    at=at, operation_id=operation_id, namespace=namespace,
                                                    finished_at=self.clock())
            self.save()
            return done, list(entries)

    def fail_delete(self, ref: str, message: str, namespace: str = "v1") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """A delete whose operation starts and then fails (as Vertex's can, after its first entry is logged): the
        version (or model) stays; the operation ends with an error, and both its entries are logged."""
        with self.lock:
            model_id, _, version = ref.partition("@")
            if version:
                model_id, model, version_id = self._resolve(ref, require_version=True)
            else:
                self._model(model_id)
            at = self.clock()
            operation_id, op_name, operation = self._new_operation(model_id, DELETE_METADATA_TYPE, at)
            error = {"code": 13, "message": message}
            self.data["operations"][op_name] = done = {**operation, "done": True, "error": error}
            common = {"project": self.project, "location": self.location, "model_id": model_id, "at": at,
                      "operation_id": operation_id, "namespace": namespace, "finished_at": self.clock(),
                      "error": error}
            entries = (auditlog.delete_model_version_entries(version_id=version_id, **common) if version
                       else auditlog.delete_model_entries(**common))
            self.save()
            return copy.deepcopy(done), list(entries)

    def set_deployed(self, ref: str, deployed: bool) -> dict[str, Any]:
        with self.lock:
            _, model, version_id = self._resolve(ref, require_version=True)
            model["versions"][version_id]["deployed"] = bool(deployed)
            self.save()
            return self._render(model, model["versions"][version_id])
