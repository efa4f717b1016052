"""HTTP helpers every API route uses: JSON errors, query and body parameters, page tokens.

Every answer is JSON (schemas/openapi.yaml): a refused parameter is a 400 naming it, as `BadParameter` says.
Flask is imported inside the helpers that need a request, so importing this module stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from datetime import datetime
from typing import Any

from registrar.kernel.errors import InvalidField
from registrar.kernel.serialize import jsonable

ID_RULE = "must be 1-128 letters, digits, '_' or '-'"
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_INTEGER_RE = re.compile(r"-?[0-9]+")

__all__ = ["BadParameter", "body_int", "body_text", "check_id", "choice_param", "decode_cursor_token", "decode_page_token", "encode_cursor_token",
           "encode_page_token", "error", "int_param", "json_body", "jsonable", "known_params", "query_fingerprint",
           "without_nulls"]


class BadParameter(InvalidField):
    """An API request parameter (query string or body field) that is refused."""

    @property
    def parameter(self) -> str:
        return self.field


def error(status: int, message: str, **extra):
    from flask import jsonify

    response = jsonify({"error": {"code": status, "message": message, **extra}})
    response.status_code = status
    return response


def int_param(name: str, default: int, low: int, high: int) -> int:
    from flask import request

    raw = request.args.get(name)
    if raw is None:
        return default
    if not _INTEGER_RE.fullmatch(raw):  # int() would also take " 5", "+5", "1_0" and non-ASCII digits
        raise BadParameter(name, f"must be an integer, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise BadParameter(name, f"must be between {low} and {high}")
    return value


def choice_param(name: str, choices: tuple[str, ...], default: str, *, blank_is_default: bool = False) -> str:
    """One of `choices`, exactly as written (no case folding): schemas/openapi.yaml lists them as an `enum`.

    Absent means `default`; an empty value means `default` only where the description lists "" (an HTML form's
    "any" option), and is refused elsewhere.
    """
    from flask import request

    raw = request.args.get(name)
    if raw is None or (raw == "" and blank_is_default):
        return default
    if raw not in choices:
        raise BadParameter(name, f"must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def check_id(name: str, value: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise BadParameter(name, ID_RULE)
    return value


def known_params(*names: str) -> None:
    from flask import request

    unknown = sorted(set(request.args) - set(names))
    if unknown:
        raise BadParameter(unknown[0], f"is not a parameter of {request.path} (known: {', '.join(names) or 'none'})")
    repeated = sorted(name for name in request.args if len(request.args.getlist(name)) > 1)
    if repeated:
        raise BadParameter(repeated[0], "is given more than once")


def json_body(*, required: bool = False) -> dict[str, Any]:
    """The request's JSON object body ({} when empty, unless `required`); 400 naming the problem otherwise."""
    from flask import request

    if not request.get_data():
        if required:
            raise BadParameter("body", "is required: a JSON object (Content-Type: application/json)")
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadParameter("body", "must be a JSON object (Content-Type: application/json)")
    return body


def without_nulls(body: dict[str, Any]) -> dict[str, Any]:
    """The body with its null fields left out: in a create or an action request, null means "the default", the
    same as leaving the field out (schemas/openapi.yaml describes those fields as nullable)."""
    return {name: value for name, value in body.items() if value is not None}


def body_int(name: str, value: Any, low: int, high: int) -> int:
    """A JSON body field that must be a whole number in [low, high]. JSON Schema's `integer` is a number without a
    fractional part, so 3.0 counts as 3; booleans and strings do not."""
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise BadParameter(name, f"must be an integer, got {value!r}")
    number = int(value)
    if not low <= number <= high:
        raise BadParameter(name, f"must be between {low} and {high}, got {number}")
    return number


def body_text(body: dict[str, Any], name: str, *, required: bool, max_length: int = 1000) -> str | None:
    """A free-text body field (a reason, say): a non-blank string of at most `max_length` characters, stripped;
    None when it is left out and not `required`."""
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > max_length:
        raise BadParameter(name, f"must be a non-empty string of at most {max_length} characters")
    return value.strip()


def query_fingerprint(*values: Any) -> str:
    """What a page token is bound to: the query's filters (and sort), so a token is refused for another query."""
    return hashlib.sha256(json.dumps(list(values)).encode()).hexdigest()[:12]


def encode_page_token(offset: int, fingerprint: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset, "f": fingerprint}).encode()).decode().rstrip("=")


def encode_cursor_token(cursor: tuple, fingerprint: str) -> str:
    """A page token that continues a query after the document `cursor` names (`Snapshot.cursor`)."""
    values = [{"t": v.isoformat()} if isinstance(v, datetime) else v for v in cursor]
    return base64.urlsafe_b64encode(json.dumps({"c": values, "f": fingerprint}).encode()).decode().rstrip("=")


def decode_cursor_token(token: str, fingerprint: str, *, changed: str = "filters or sort") -> tuple:
    """The cursor in `token`; BadParameter if this API did not issue it, or issued it for another query."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        values = data["c"]
        if not isinstance(values, list) or not values or not isinstance(values[-1], str):
            raise ValueError("no cursor")
        cursor = tuple(datetime.fromisoformat(v["t"]) if isinstance(v, dict) else v for v in values)
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BadParameter("page_token", "is not a token this API issued") from exc
    if data.get("f") != fingerprint:
        raise BadParameter("page_token", f"belongs to a different query ({changed} changed)")
    return cursor


def decode_page_token(token: str, fingerprint: str, *, changed: str = "filters or sort") -> int:
    """The offset in `token`; BadParameter if this API did not issue it, or issued it for another query (what the
    message says may have `changed`)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BadParameter("page_token", "is not a token this API issued") from exc
    if data.get("f") != fingerprint or offset < 0:
        raise BadParameter("page_token", f"belongs to a different query ({changed} changed)")
    return offset
