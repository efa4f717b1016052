"""Deployments: serving a registered model version on Cloud Run (commands, handlers, service naming)."""

from __future__ import annotations

HANDLERS: dict = {}
