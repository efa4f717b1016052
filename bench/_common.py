"""Shared helpers for the benchmark scripts (path setup, table printing, statistics, event builders)."""

from __future__ import annotations

import base64
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT / "functions", ROOT, ROOT / "tests" / "unit"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))) + " |"

    out = [line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in cells[1:]]
    if title:
        out.insert(0, title)
    return "\n".join(out)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def envelope(payload: dict | bytes, message_id: str) -> dict:
    """The CloudEvent data of a Pub/Sub message, as functions-framework hands it to an entry point."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return {"message": {"data": base64.b64encode(data).decode(), "messageId": message_id, "attributes": {}},
            "subscription": "projects/bench/subscriptions/bench"}


ENTRY_POINT_OF = {"pipeline-events": "on_pipeline_event", "model-audit-events": "on_model_audit_event"}


def quiet_logs() -> None:
    """The entry points log one JSON line per message to stdout; a benchmark prints tables instead."""
    from registrar.messaging import consume

    consume.log = lambda *args, **kwargs: None
