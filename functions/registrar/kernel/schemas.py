"""The event contract: JSON Schemas (draft 2020-12) in `schemas/`, loaded once and compiled once.

A payload is checked by the schema compiled to Python code (fastjsonschema: a few microseconds); only a payload it
refuses goes through jsonschema, which is the reference and names every violation for the quarantine reason.
`tests/unit/test_schema_validation.py` holds the two to the same verdicts on valid and invalid samples.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from registrar.kernel.errors import PermanentError

_directory: Path | None = None


def use_directory(path: str | Path | None) -> None:
    """Read schemas from `path` (bootstrap passes `$REGISTRAR_SCHEMAS_DIR`); None: find them (`schemas_dir`)."""
    global _directory
    _directory = Path(path) if path else None
    load.cache_clear()
    validator.cache_clear()
    compiled.cache_clear()


def schemas_dir() -> Path:
    """The directory given to `use_directory`, else `schemas/` in the deployed source root, else the repository's."""
    if _directory is not None:
        return _directory
    functions_root = Path(__file__).resolve().parent.parent.parent
    for candidate in (functions_root / "schemas", functions_root.parent / "schemas"):
        if (candidate / "topology.json").is_file():
            return candidate
    raise RuntimeError(f"schemas/ not found next to {functions_root}; set REGISTRAR_SCHEMAS_DIR")


@functools.cache
def load(relative: str) -> dict[str, Any]:
    return json.loads((schemas_dir() / relative).read_text())


@functools.cache
def validator(relative: str):
    from jsonschema import Draft202012Validator, FormatChecker

    schema = load(relative)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


@functools.cache
def compiled(relative: str):
    import fastjsonschema  # lazy: only entry points that decode payloads need it

    # Formats are annotations, as the reference checks them here (RFC 3339 times are parsed by the decoders).
    return fastjsonschema.compile(load(relative), use_formats=False)


def validate(payload: Any, relative: str) -> None:
    """Raise PermanentError naming every violation (path and message), or return."""
    try:
        compiled(relative)(payload)
        return
    except Exception:  # noqa: BLE001 - any refusal (or failure) of the fast check is settled by the reference
        pass
    errors = sorted(validator(relative).iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        described = "; ".join(
            f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors[:5]
        )
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise PermanentError(f"schema {relative}: {described}{more}", kind="schema")


def topology() -> dict[str, Any]:
    return load("topology.json")
