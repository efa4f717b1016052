"""Values as JSON can carry them: datetimes as RFC 3339 strings, mappings and sequences recursively."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any


def jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value
