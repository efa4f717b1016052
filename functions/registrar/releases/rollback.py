"""What a rollback undoes of the releases it rolls back: the aliases they moved go back.

A release policy's delivery (its deploy request id is the release id) can move an alias with the version it deploys
(`releases.delivery`). When a rollback takes the service back past that release, the alias goes back to the version
that held it before (`previous_version_id`; removed if none did, except `default`, which Vertex AI never removes),
with MergeVersionAliases, and the promotion records that it was rolled back. The registry learns of the move from the
audit log, like any other alias move.

Runs after Cloud Run serves the rollback's target, on every delivery of the rollback request until done: a move
already recorded as rolled back is skipped, and MergeVersionAliases is idempotent, so a crash between the move and
its record only repeats the move.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel.logs import log
from registrar.kernel.paths import model_path
from registrar.kernel.ports import AliasWriter
from registrar.releases.commands import RecordPromotionRollback
from registrar.releases.moves import alias_moves_of_release

CALLS = (AliasWriter.merge_aliases,)  # what moving aliases back calls outside Firestore
DEFAULT_ALIAS = "default"


def revert_release_aliases(services, request: Mapping[str, Any]) -> None:
    """`request`: the rollback's deploy request once Cloud Run serves its target (`rollback.undone_releases`: the
    releases it undid, oldest first)."""
    model_id = request["model_id"]
    undone = list((request.get("rollback") or {}).get("undone_releases") or [])
    moves = [move for release_id in reversed(undone)  # newest release first, as each one's moves are
             for move in alias_moves_of_release(services.store, model_id, release_id)
             if move.rolled_back_at is None]
    if not moves:
        return
    writer = services.registry
    if not isinstance(writer, AliasWriter):
        log("WARNING", f"rollback {request['request_id']} cannot move aliases back: no Vertex AI writer is configured",
            model_id=model_id)
        return
    held = (services.store.get(model_path(model_id)) or {}).get("aliases") or {}
    for move in moves:  # newest first: the oldest undone move decides where the alias ends
        holder = held.get(move.alias)
        if holder is not None and holder not in (move.version_id, move.previous_version_id):
            log("WARNING", f"alias {move.alias!r} of model {model_id} moved to version {holder} after promotion "
                           f"{move.promotion_id}: the rollback leaves it there", model_id=model_id)
        elif move.previous_version_id is not None:
            writer.merge_aliases(model_id, move.previous_version_id, [move.alias])  # TransientError: redelivered
        elif move.alias != DEFAULT_ALIAS:
            writer.merge_aliases(model_id, move.version_id, [f"-{move.alias}"])
        services.bus.handle(RecordPromotionRollback(promotion_id=move.promotion_id,
                                                    rollback_request_id=request["request_id"],
                                                    occurred_at=services.now()))
