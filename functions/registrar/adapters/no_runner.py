"""The pipeline runner when none is configured: every submission fails, saying how to configure one.

Without it a scheduled run would have to be simulated (the events runner reports every run SUCCEEDED with made-up
metrics) or started with a runner that cannot work here; the registry would show training that never happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registrar.kernel.errors import PermanentError
from registrar.kernel.ports import PipelineRunner

HOW_TO_CONFIGURE = (
    "set REGISTRAR_PIPELINE_RUNNER=local to run the TFX pipeline on this machine (it needs .venv-pipeline: "
    "`make pipeline-setup`), REGISTRAR_PIPELINE_RUNNER=vertex with REGISTRAR_PIPELINE_TEMPLATE and "
    "REGISTRAR_PIPELINE_ROOT to submit Vertex AI PipelineJobs, or REGISTRAR_PIPELINE_RUNNER=events to simulate "
    "runs (their runs and the versions they register are marked simulated)")


class UnconfiguredPipelineRunner(PipelineRunner):
    def __init__(self) -> None:
        self.reason = f"no pipeline runner is configured: {HOW_TO_CONFIGURE}"

    def submit(self, training_run: Mapping[str, Any]) -> str:
        raise PermanentError(f"training run {training_run.get('training_run_id')} was not started: {self.reason}",
                             kind="not_configured")
