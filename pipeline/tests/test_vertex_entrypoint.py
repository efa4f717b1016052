"""The compiled components' entry point, run as Vertex AI runs it (a process with the container's arguments):
the run's Dataflow settings arrive at a Beam executor as Beam pipeline arguments through TFX's own entry point."""
import json
import os
import subprocess
import sys
from pathlib import Path

from tfx.dsl.components.base import base_beam_executor

REPO = Path(__file__).resolve().parents[2]


class RecordingExecutor(base_beam_executor.BaseBeamExecutor):
    """A Beam executor that writes the Beam arguments it was given to exec_properties["record"]."""

    def Do(self, input_dict, output_dict, exec_properties):
        Path(exec_properties["record"]).write_text(json.dumps(self._beam_pipeline_args))


def run_entrypoint(tmp_path, dataflow_value: str) -> list[str]:
    record = tmp_path / "beam_args.json"
    executor_input = {"inputs": {"parameterValues": {"record": str(record)}},
                      "outputs": {"outputFile": str(tmp_path / "out" / "executor_output.json")}}
    args = [sys.executable, "-m", "pipeline.runners.vertex_entrypoint",
            "--executor_class_path", f"{__name__}.RecordingExecutor",
            "--json_serialized_invocation_args", json.dumps(executor_input),
            "--json_serialized_inputs_spec_args", json.dumps({"parameters": {"record": {"parameterType": "STRING"}}}),
            "--project=proj", "--temp_location=gs://b/tmp",
            "--registrar_dataflow", dataflow_value,  # what Vertex put in place of the compiled placeholder
            "--registrar_dataflow_worker_image=europe-docker.pkg.dev/p/r/tfx-pipeline:1",
            "--registrar_dataflow_temp_location=gs://b/tmp"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "out" / "executor_output.json").exists()  # TFX's entry point ran to its end
    # TFX adds its own: the program path (as its own entry point does), a staged package and labels
    return [a for a in json.loads(record.read_text()) if a.startswith("--")
            and not a.startswith(("--extra_package=", "--labels"))]


def test_dataflow_settings_reach_the_beam_executor(tmp_path):
    beam = run_entrypoint(tmp_path, json.dumps({"region": "europe-west1", "max_workers": 8, "network": "vpc"}))
    assert beam == ["--project=proj", "--runner=DataflowRunner", "--region=europe-west1",
                    "--temp_location=gs://b/tmp", "--max_num_workers=8", "--network=vpc",
                    "--sdk_container_image=europe-docker.pkg.dev/p/r/tfx-pipeline:1", "--experiments=use_runner_v2"]


def test_without_dataflow_settings_beam_runs_directly(tmp_path):
    assert run_entrypoint(tmp_path, "") == ["--project=proj", "--temp_location=gs://b/tmp"]
