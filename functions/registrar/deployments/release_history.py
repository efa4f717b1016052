"""A service's releases, and what a rollback goes back to. Pure logic over the endpoint document's `releases`.

A release is what one ready deploy put on a service: the version, the Cloud Run revision that serves it and the
settings, kept oldest first on `endpoints/{service}` (the last MAX_RELEASES). The releases not rolled back stand
in the order they were made, and the last of them serves. A rollback goes back to an earlier standing release of
another version (by default the latest one) and marks every standing release after it rolled back, so a second
rollback goes further back, never forward again; a later deploy is a new release on top.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

MAX_RELEASES = 50


def release(*, release_id: str, version_id: str, revision: str, settings: Mapping[str, Any], image: str,
            deployed_at: datetime, deployed_by: str) -> dict[str, Any]:
    """One release as the endpoint document keeps it (`release_id` is the deploy request's id)."""
    return {"release_id": release_id, "version_id": version_id, "revision": revision, "settings": dict(settings),
            "image": image, "deployed_at": deployed_at, "deployed_by": deployed_by, "rolled_back_at": None,
            "rolled_back_by": None}


def pushed(releases: Sequence[Mapping[str, Any]], entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`releases` with `entry` on top. A deploy that left the serving revision as it was (the same spec applied
    again) is no new release."""
    current = serving(releases)
    if current is not None and current["revision"] == entry["revision"]:
        return [dict(r) for r in releases]
    return [dict(r) for r in releases][-(MAX_RELEASES - 1):] + [dict(entry)]


def standing(releases: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in releases if not r.get("rolled_back_at")]


def serving(releases: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The release that serves now: the last one standing."""
    stack = standing(releases)
    return stack[-1] if stack else None


def find(releases: Sequence[Mapping[str, Any]], release_id: str) -> Mapping[str, Any] | None:
    return next((r for r in releases if r["release_id"] == release_id), None)


class NothingToRollBack(Exception):
    """No earlier release to go back to; the message says why."""


@dataclasses.dataclass(frozen=True)
class RollbackPlan:
    current: Mapping[str, Any]
    target: Mapping[str, Any]
    undone: tuple[str, ...]  # the releases the rollback undoes, oldest first


def plan_rollback(releases: Sequence[Mapping[str, Any]], to_version: str | None = None) -> RollbackPlan:
    """Where a rollback goes: the latest earlier standing release of `to_version`, or of any version other than
    the serving one. NothingToRollBack when there is none."""
    stack = standing(releases)
    if not stack:
        raise NothingToRollBack("no release is recorded on it")
    current = stack[-1]
    if to_version is not None and to_version == current["version_id"]:
        raise NothingToRollBack(f"version {to_version} is the version it serves")
    earlier = [r for r in stack[:-1] if r["version_id"] != current["version_id"]
               and (to_version is None or r["version_id"] == to_version)]
    if not earlier:
        if to_version is not None:
            raise NothingToRollBack(f"version {to_version} is not among the releases before the serving one "
                                    f"({_listed(stack[:-1])})")
        raise NothingToRollBack(f"no release of another version before the serving one (version "
                                f"{current['version_id']})")
    target = earlier[-1]
    undone = tuple(r["release_id"] for r in stack[stack.index(target) + 1:])
    return RollbackPlan(current=current, target=target, undone=undone)


def rollback_targets(releases: Sequence[Mapping[str, Any]]) -> list[str]:
    """The versions a rollback of this service may go back to, the default (`plan_rollback` without a version)
    first: the earlier standing releases' versions other than the serving one, newest first. Empty: nothing to roll
    back."""
    stack = standing(releases)
    if not stack:
        return []
    current = stack[-1]["version_id"]
    return list(dict.fromkeys(r["version_id"] for r in reversed(stack[:-1]) if r["version_id"] != current))


def rolled_back(releases: Sequence[Mapping[str, Any]], target_id: str, *, at: datetime, by: str,
                revision: str | None = None) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """The releases once `target_id` serves again (on `revision` when it was redeployed): it stands, and every
    release after it that stood is rolled back (at, by). Also the ids of those releases."""
    result = [dict(r) for r in releases]
    index = next((i for i, r in enumerate(result) if r["release_id"] == target_id), None)
    if index is None:
        return result, ()
    target = result[index]
    target.update(rolled_back_at=None, rolled_back_by=None)
    if revision:
        target["revision"] = revision
    undone = []
    for entry in result[index + 1:]:
        if not entry.get("rolled_back_at"):
            entry.update(rolled_back_at=at, rolled_back_by=by)
            undone.append(entry["release_id"])
    return result, tuple(undone)


def _listed(stack: Sequence[Mapping[str, Any]]) -> str:
    versions = list(dict.fromkeys(r["version_id"] for r in stack))
    return f"versions {', '.join(versions)}" if versions else "none"
