"""`registrar pipeline run --local`: the TFX pipeline in its own environment (.venv-pipeline)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

PIPELINE_VENV = Path(os.environ.get("PIPELINE_VENV", ".venv-pipeline"))


@click.group()
def pipeline() -> None:
    """Run the TFX pipeline (TFRS retrieval / ranking / multitask)."""


@pipeline.command("run", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--local", "local_run", is_flag=True, required=True,
              help="Run with the LocalDagRunner on synthetic data (the Vertex AI compile is `python -m pipeline.runners.vertex`).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=".registrar", show_default=True,
              help="Publish the PipelineRunEvent to the local stack described by STATE_DIR/local.env, if it is up.")
@click.pass_context
def run(ctx: click.Context, local_run: bool, state_dir: Path) -> None:
    """Train on synthetic data, push a versioned model and report the run to the registry.

    Every other option goes to `python -m pipeline.runners.local` (e.g. --model-type retrieval
    --interactions 5000 --output /tmp/run --training-run-id run-1 --model-name recs_retrieval).
    """
    python = PIPELINE_VENV / "bin" / "python"
    if not python.exists():
        raise click.ClickException(f"{python} not found: run `make pipeline-setup` first (TFX 1.16 needs its own "
                                   "environment: it pins protobuf 4 and numpy 1)")
    env = dict(os.environ)
    local_env = state_dir / "local.env"
    if local_env.exists():
        for line in local_env.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key in ("PUBSUB_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT"):
                env[key] = value
    args = [str(python), "-m", "pipeline.runners.local", *ctx.args]
    if "--output" not in ctx.args:
        args += ["--output", str(state_dir / "pipeline-runs")]
    sys.stdout.flush()
    os.execve(str(python), args, env)
