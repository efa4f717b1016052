"""The emulator's Admin Activity audit log, as Cloud Logging's `entries.list` serves it back.

Every audit entry the emulator writes (see `auditlog`) is also appended to a JSON-lines file beside its state file,
as Cloud Logging keeps Admin Activity entries whatever happens to their delivery through a sink. `POST
/v2/entries:list` (the Logging API's REST path) answers queries made of `AND`-joined comparisons on an entry's
fields: `field="value"`, `field>="value"` (also `>`, `<=`, `<`; timestamps compare as times) and `field:"value"`
(the field contains the value), which is what the reconciler sends.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from localcloud.emulator import invalid, parse_rfc3339

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
_TERM = re.compile(r'^\s*(?P<field>[A-Za-z_][\w.]*)\s*(?P<op>>=|<=|=|>|<|:)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*$')


def log_path_for(state_path: str | os.PathLike) -> Path:
    path = Path(state_path)
    return path.with_name(f"{path.name}.activity.jsonl")


def parse_query(query: str) -> list[tuple[str, str, str]]:
    terms = []
    for term in re.split(r"\s+AND\s+", query.strip()) if query.strip() else []:
        match = _TERM.match(term)
        if not match:
            raise invalid(f"unsupported filter term {term!r}: use field=\"value\", field>=\"value\" or "
                          "field:\"value\" joined by AND")
        terms.append((match["field"], match["op"], match["value"].replace('\\"', '"')))
    return terms


def _field(entry: dict[str, Any], path: str) -> Any:
    value: Any = entry
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _compare(have: Any, op: str, want: str, field: str) -> bool:
    if have is None:
        return False
    if op == ":":
        return want in str(have)
    if field == "timestamp" or field.endswith("Timestamp"):
        left: Any = parse_rfc3339(str(have))
        right: Any = parse_rfc3339(want)
    else:
        left, right = str(have), want
    return {"=": left == right, ">=": left >= right, ">": left > right, "<=": left <= right,
            "<": left < right}[op]


class ActivityLog:
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.lock = threading.Lock()

    def append(self, entries: list[dict[str, Any]]) -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                for entry in entries:
                    handle.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def _entries(self) -> list[dict[str, Any]]:
        with self.lock:
            if not self.path.exists():
                return []
            with open(self.path) as handle:
                return [json.loads(line) for line in handle if line.strip()]

    def list(self, body: dict[str, Any], project: str) -> dict[str, Any]:
        names = body.get("resourceNames") or []
        if f"projects/{project}" not in names:
            return {"entries": []}
        terms = parse_query(str(body.get("filter") or ""))
        order = (body.get("orderBy") or "timestamp asc").strip()
        if order not in ("timestamp asc", "timestamp desc"):
            raise invalid(f"orderBy {order!r}: only \"timestamp asc\" and \"timestamp desc\" are permitted")
        try:
            size = min(int(body.get("pageSize") or DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
            start = int(base64.urlsafe_b64decode(body["pageToken"]).decode()) if body.get("pageToken") else 0
        except (TypeError, ValueError):
            raise invalid("pageSize or pageToken is invalid") from None
        matching = [e for e in self._entries() if all(_compare(_field(e, f), op, v, f) for f, op, v in terms)]
        matching.sort(key=lambda e: _timestamp(e), reverse=order.endswith("desc"))
        page: dict[str, Any] = {"entries": matching[start:start + size]}
        if start + size < len(matching):
            page["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
        return page


def _timestamp(entry: dict[str, Any]) -> datetime:
    return parse_rfc3339(entry.get("timestamp") or "1970-01-01T00:00:00Z")
