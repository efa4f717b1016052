"""The Trainer on Vertex AI with the run's machine: machine type, GPUs, trainer image and training region.

A template compiled once cannot hold a run's machine in the Trainer's ``custom_config`` (one JSON constant), so the
run's ``machine_type``, ``gpu_type``, ``gpu_count`` and ``training_region`` (runtime parameters) reach the Trainer
through its ``hyperparameters`` input (``TrainerHyperparameters``), and this executor lays them over the compiled
Vertex custom job before TFX starts it: the worker pool's machine spec, the CUDA trainer image when the run asks
for GPUs (the CPU image otherwise), and the region (GPU quotas often live elsewhere than the pipeline). The trainer
inside the job reads ``gpu_count`` and fails if it sees fewer GPUs.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform import constants as vertex_constants
from tfx.extensions.google_cloud_ai_platform.trainer import component as vertex_trainer_component
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
from tfx.types import standard_component_specs
from tfx.utils import io_utils, json_utils

# custom_config key: {"cpu": image, "gpu": image or ""}, compiled in by the Vertex runner.
TRAINER_IMAGES_KEY = "registrar_trainer_images"
TRAINING_ARGS_KEY = vertex_trainer_executor.TRAINING_ARGS_KEY
REGION_KEY = vertex_constants.VERTEX_REGION_KEY


class MachineSpecError(ValueError):
    """The run's machine settings cannot make a training job (e.g. GPUs without a GPU type or image)."""


def run_custom_config(custom_config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``custom_config`` with the run's machine (``values``: the hyperparameters) in its Vertex custom job."""
    config = copy.deepcopy(custom_config)
    args = config.get(TRAINING_ARGS_KEY)
    if not args or not args.get("worker_pool_specs"):
        raise MachineSpecError(f"custom_config has no {TRAINING_ARGS_KEY}.worker_pool_specs to run the trainer on")
    pool = args["worker_pool_specs"][0]
    gpu_count = int(values.get("gpu_count") or 0)
    gpu_type = (values.get("gpu_type") or "").strip()
    machine_type = (values.get("machine_type") or "").strip() or pool["machine_spec"]["machine_type"]
    if gpu_count < 0:
        raise MachineSpecError(f"gpu_count={gpu_count} is negative")
    if gpu_count and not gpu_type:
        raise MachineSpecError(f"gpu_count={gpu_count} needs a gpu_type (e.g. NVIDIA_TESLA_T4, NVIDIA_L4)")
    images = config.get(TRAINER_IMAGES_KEY) or {"cpu": pool["container_spec"]["image_uri"], "gpu": ""}
    image = images.get("gpu") if gpu_count else images.get("cpu")
    if not image:
        raise MachineSpecError(f"the run asks for {gpu_count} GPU(s) but the template was compiled without a CUDA "
                               "trainer image (python -m pipeline.runners.vertex --gpu-image IMAGE)")
    machine_spec = {"machine_type": machine_type}
    if gpu_count:
        machine_spec.update({"accelerator_type": gpu_type, "accelerator_count": gpu_count})
    pool["machine_spec"] = machine_spec
    pool["container_spec"] = {**pool.get("container_spec", {}), "image_uri": image}
    config[REGION_KEY] = (values.get("training_region") or "").strip() or config.get(REGION_KEY)
    config["gpu_count"] = gpu_count
    return config


def hyperparameter_values(input_dict) -> dict[str, Any]:
    """The values TrainerHyperparameters wrote (the file the Trainer hands to run_fn), or {}."""
    artifacts = input_dict.get(standard_component_specs.HYPERPARAMETERS_KEY) or []
    if not artifacts:
        return {}
    path = io_utils.get_only_uri_in_dir(artifacts[0].uri)
    return (json.loads(io_utils.read_string_file(path)) or {}).get("values") or {}


class Executor(vertex_trainer_executor.GenericExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        props = dict(exec_properties)
        config = json_utils.loads(props.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}
        props[standard_component_specs.CUSTOM_CONFIG_KEY] = json_utils.dumps(
            run_custom_config(config, hyperparameter_values(input_dict)))
        return self.launch(input_dict, output_dict, props)

    def launch(self, input_dict, output_dict, exec_properties):
        """Starts the Vertex custom job (TFX's executor) and waits for it."""
        return super().Do(input_dict, output_dict, exec_properties)


class Trainer(vertex_trainer_component.Trainer):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
