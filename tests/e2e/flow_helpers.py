"""Helpers the e2e flows share (importable as `flow_helpers`: pytest puts this directory on sys.path; the name
must differ from tests/unit/helpers.py, or whichever is imported first shadows the other)."""

from __future__ import annotations

import time

from registrar.adapters.vertex import VertexModelRegistry


def eventually(check, *, timeout: float = 90.0, what: str = "", every: float = 0.5):
    """Poll `check` until it returns something truthy, and return that; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"not true after {timeout:.0f}s: {what} (last: {last!r})")


def vertex_registry(stack) -> VertexModelRegistry:
    """The Vertex AI adapter on the stack's Vertex AI emulator."""
    env = stack.env
    return VertexModelRegistry(env["GOOGLE_CLOUD_PROJECT"], env["GOOGLE_CLOUD_REGION"],
                               api_endpoint=env["VERTEX_API_ENDPOINT"])
