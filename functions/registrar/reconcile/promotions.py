"""Protected aliases moved out of band: Vertex AI shows a protected alias on a version that no approved promotion
put there (the console, gcloud, another client moved it). Reported as `unapproved_promotion`, never accepted
silently; the registry's alias still follows Vertex (it is the truth), and an approver settles it by promoting
that version (or moving the alias back)."""

from __future__ import annotations

from collections.abc import Mapping

from registrar.kernel.store import DocumentStore
from registrar.reconcile.report import UNAPPROVED_PROMOTION, Discrepancy
from registrar.releases.moves import approved_holders
from registrar.releases.policy import stored_policy


def unapproved_promotions(store: DocumentStore, vertex_aliases: Mapping[str, Mapping[str, str]],
                          display_names: Mapping[str, str]) -> list[Discrepancy]:
    """`vertex_aliases`: model → alias → version, as Vertex lists them."""
    protected = sorted(stored_policy(store).protected_aliases)
    if not protected:
        return []
    approved = approved_holders(store)
    found = []
    for model_id, aliases in sorted(vertex_aliases.items()):
        for alias in protected:
            held = aliases.get(alias)
            expected = approved.get((model_id, alias))
            if held is None or held == expected:
                continue
            why = (f"the last approved promotion put it on version {expected}" if expected
                   else "no approved promotion put it there")
            found.append(Discrepancy(
                UNAPPROVED_PROMOTION, model_id, held, display_names.get(model_id) or model_id,
                f"protected alias {alias!r} is on version {held} in Vertex AI; {why}",
                {"alias": alias, "vertex": held, "approved": expected}))
    return found
