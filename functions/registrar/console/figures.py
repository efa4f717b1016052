"""What the pages draw, computed from what the reads answer (no counting here): a bar chart per metric across a
model's versions, a line chart per metric across a run's epochs, and the calendar's days as weeks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from typing import Any


def metric_charts(versions: list[Mapping[str, Any]], lineage: list[Mapping[str, Any]] = (), width: int = 420,
                  bar_area: int = 120) -> list[dict[str, Any]]:
    """One bar chart per metric across versions (oldest first), as coordinates for inline SVG. A version's metrics
    are its own (its labels), else its training run's (`lineage`): a deleted version keeps no labels, but the run
    that trained it still has its figures."""
    runs = {link["version_id"]: (link.get("training_run") or {}).get("metrics") or {} for link in lineage}
    measured = [(v, v.get("metrics") or runs.get(v.get("version_id")) or {}) for v in versions]
    ordered = sorted(((v, m) for v, m in measured if m), key=lambda vm: _version_key(vm[0].get("version_id")))
    names = sorted({name for _, metrics in ordered for name in metrics})
    charts = []
    for name in names:
        points = [(str(v["version_id"]), float(m[name]), v.get("state"))
                  for v, m in ordered if isinstance(m.get(name), (int, float)) and not isinstance(m.get(name), bool)]
        if not points:
            continue
        top = max(abs(value) for _, value, _ in points) or 1.0
        slot = max(24, min(80, (width - 40) // len(points)))
        bars = []
        for i, (version, value, state) in enumerate(points):
            height = max(2, round(abs(value) / top * bar_area))
            x = 30 + i * slot
            bars.append({"version": version, "value": value, "label": f"{value:.4g}", "deleted": state != "live",
                         "x": x, "width": slot - 8, "y": 20 + bar_area - height, "height": height,
                         "text_x": x + (slot - 8) // 2, "value_y": 14 + bar_area - height,
                         "axis_y": 20 + bar_area + 14})
        charts.append({"name": name, "bars": bars, "width": max(width, 40 + slot * len(points)),
                       "height": bar_area + 42, "base_y": 20 + bar_area})
    return charts


EPOCH_SPLITS = ("train", "validation")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def epoch_columns(epochs: list[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The (split, metric) pairs any epoch reports, metric by metric, training before validation: the columns of
    a run's table of epochs."""
    names = sorted({name for e in epochs for split in EPOCH_SPLITS for name in (e.get(split) or {})})
    return [(split, name) for name in names for split in EPOCH_SPLITS
            if any(_finite((e.get(split) or {}).get(name)) for e in epochs)]


def epoch_charts(epochs: list[Mapping[str, Any]], width: int = 360, height: int = 150) -> list[dict[str, Any]]:
    """One line chart per metric across a run's epochs, a series per split that reports it (training,
    validation), as coordinates for inline SVG. The vertical axis spans the metric's lowest to highest value."""
    left, right, top, bottom = 48, 12, 12, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    numbers = sorted({e["epoch"] for e in epochs if _finite(e.get("epoch"))})
    first, last = (numbers[0], numbers[-1]) if numbers else (1, 1)
    charts = []
    for name in sorted({name for _, name in epoch_columns(epochs)}):
        series = []
        for split in EPOCH_SPLITS:
            points = [(e["epoch"], float(e[split][name])) for e in epochs
                      if _finite(e.get("epoch")) and _finite((e.get(split) or {}).get(name))]
            if points:
                series.append({"split": split, "points": points})
        values = [v for s in series for _, v in s["points"]]
        low, high = min(values), max(values)
        for s in series:
            s["dots"] = [{"epoch": epoch, "value": value, "label": f"{value:.4g}",
                          "x": left + _scaled(epoch, first, last, plot_w),
                          "y": round(top + plot_h - _scaled(value, low, high, plot_h), 1)} for epoch, value in s["points"]]
            s["polyline"] = " ".join(f"{d['x']},{d['y']}" for d in s["dots"])
            s["summary"] = ", ".join(f"epoch {d['epoch']} {d['label']}" for d in s["dots"])
        step = max(1, math.ceil(len(numbers) / 10))  # at most about ten epoch numbers under the axis
        ticks = [{"epoch": n, "x": left + _scaled(n, first, last, plot_w)} for i, n in enumerate(numbers) if i % step == 0 or n == last]
        charts.append({"name": name, "series": series, "width": width, "height": height,
                       "left": left, "right": width - right, "top": top, "base_y": top + plot_h,
                       "tick_y": top + plot_h + 16, "high": f"{high:.4g}", "low": f"{low:.4g}", "ticks": ticks})
    return charts


def _scaled(value: float, low: float, high: float, length: float) -> float:
    """Where `value` falls on an axis of `length` from `low` to `high` (the middle when they are equal)."""
    return round(length / 2 if high == low else (value - low) / (high - low) * length, 1)


def _version_key(value: Any) -> tuple[int, str]:
    try:
        return int(value), ""
    except (TypeError, ValueError):
        return -1, str(value)


def calendar_weeks(cal: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`/calendar`'s days as weeks (rows) of seven days, each day with its words for the grid: what a colour says
    is also said in text."""
    today = cal["today"]
    weeks: list[dict[str, Any]] = []
    for day in cal["days"]:
        if day["weekday"] == 0 or not weeks:
            weeks.append({"start": day["date"], "days": []})
        runs = day["runs"]
        kinds = [kind for kind, present in (("completed", runs["completed"]), ("failed", runs["failed"]),
                                            ("scheduled", day["scheduled"])) if present]
        words = [f"{count} {what}" for what, count in (("completed", runs["completed"]), ("failed", runs["failed"]),
                                                       ("other", runs["other"]), ("scheduled", day["scheduled"]))
                 if count]
        detail = [f"{s.get('name') or s['schedule_id']} ({s.get('model_name') or '—'}): {s['runs']} run"
                  + ("s" if s["runs"] != 1 else "") for s in day["schedules"]]
        weeks[-1]["days"].append({
            **day, "label": date.fromisoformat(day["date"]).strftime("%d %b"), "is_today": day["date"] == today,
            "past": day["date"] < today, "kinds": kinds, "summary": ", ".join(words) or "nothing", "detail": detail,
            "title": "; ".join([day["date"], ", ".join(words) or "nothing", *detail]),
        })
    return weeks
