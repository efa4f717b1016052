"""registry_api routes for deployments."""

from __future__ import annotations


def register_deployment_routes(app, store, services_factory) -> None:
    return None
