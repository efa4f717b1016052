"""registry_api routes for schedules."""

from __future__ import annotations


def register_schedule_routes(app, store, services_factory) -> None:
    return None
