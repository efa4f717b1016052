"""Retraining schedules: schedule documents, Cloud Scheduler jobs, and one training run per slot."""

from __future__ import annotations

HANDLERS: dict = {}
