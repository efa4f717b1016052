"""Container entry point of the compiled template's components:

    python -m pipeline.runners.vertex_entrypoint --executor_class_path ... [--registrar_dataflow=JSON ...] [beam args]

Expands the run's Dataflow settings (``pipeline.runners.dataflow``) into Beam arguments, then hands over to TFX's
own entry point (``kubeflow_v2_run_executor``), which runs the component's executor with them.
"""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as tfx_entrypoint

    from pipeline.runners import dataflow

    argv = list(sys.argv if argv is None else argv)
    sys.argv = [argv[0], *dataflow.expand_container_args(argv[1:])]
    app.run(tfx_entrypoint.main, flags_parser=tfx_entrypoint._parse_flags)


if __name__ == "__main__":
    main()
