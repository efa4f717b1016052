"""`registrar migrate`: rewrite a registry kept in the first document layout into the Core v2 documents.

A dry run by default (it prints what it would change); `--apply` changes it. Idempotent and resumable: run it
again after an interruption, and a run over a migrated registry changes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.command()
@click.option("--apply", "apply_changes", is_flag=True, help="Change the registry (default: report what would change).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".registrar"),
              show_default=True, help="Where `registrar local up` wrote local.env (else the environment is used).")
def migrate(apply_changes: bool, state_dir: Path) -> None:
    """Rewrite the registry's Firestore documents into the current layout."""
    from registrar.adapters.firestore import FirestoreStore
    from registrar.kernel.clock import utcnow
    from registrar.migration import migrate as run_migration
    from registrar_cli.audit import load_local_env
    from registrar_cli.main import console

    load_local_env(state_dir)
    project = os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise click.ClickException("no project: run `registrar local up` (writes .registrar/local.env), "
                                   "or set GOOGLE_CLOUD_PROJECT")
    store = FirestoreStore.connect(project, os.environ.get("REGISTRAR_FIRESTORE_DATABASE") or "(default)")
    out = console()
    report = run_migration(store, apply=apply_changes, now=utcnow(), progress=lambda line: out.print(line))
    verb = "changed" if apply_changes else "would change"
    for field, value in report.to_doc().items():
        if field != "applied":
            out.print(f"{field.replace('_', ' ')}: {value}")
    if not report.changes_anything:
        out.print("the registry is in the current layout: nothing to do")
    elif not apply_changes:
        out.print(f"dry run: the counts above are what --apply {verb.split()[-1]}s")
    else:
        out.print("migrated")
