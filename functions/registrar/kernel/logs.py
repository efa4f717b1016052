"""Structured logs: one JSON object per line, which Cloud Logging parses into jsonPayload with severity."""

from __future__ import annotations

import json
import sys
from typing import Any


def log(severity: str, message: str, **fields: Any) -> None:
    record = {"severity": severity, "message": message, **fields}
    print(json.dumps(record, default=str, sort_keys=True), file=sys.stdout, flush=True)
