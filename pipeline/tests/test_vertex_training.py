"""The run's machine laid over the compiled Vertex custom job (pipeline/vertex_training.py)."""
import copy
import json

import pytest

from pipeline.tests.test_vertex_compile import capturing_executor

COMPILED = {
    "ai_platform_enable_vertex": True, "ai_platform_vertex_region": "europe-west4", "gpu_count": 0,
    "ai_platform_training_args": {"project": "p", "worker_pool_specs": [{
        "machine_spec": {"machine_type": "n1-standard-8"}, "replica_count": 1,
        "container_spec": {"image_uri": "cpu-image"}}]},
    "registrar_trainer_images": {"cpu": "cpu-image", "gpu": "gpu-image"},
    "epochs": 10,
}


def _pool(config):
    return config["ai_platform_training_args"]["worker_pool_specs"][0]


def test_gpus_get_the_cuda_image_an_accelerator_and_their_region():
    from pipeline.vertex_training import run_custom_config

    config = run_custom_config(COMPILED, {"gpu_type": "NVIDIA_TESLA_T4", "gpu_count": 4,
                                          "training_region": "us-central1", "machine_type": "n1-standard-32"})
    assert _pool(config)["machine_spec"] == {"machine_type": "n1-standard-32", "accelerator_type": "NVIDIA_TESLA_T4",
                                             "accelerator_count": 4}
    assert _pool(config)["container_spec"]["image_uri"] == "gpu-image" and _pool(config)["replica_count"] == 1
    assert config["ai_platform_vertex_region"] == "us-central1" and config["gpu_count"] == 4
    assert config["epochs"] == 10 and COMPILED["ai_platform_vertex_region"] == "europe-west4"  # input untouched


def test_no_gpus_keep_the_cpu_image_and_the_compiled_machine():
    from pipeline.vertex_training import run_custom_config

    config = run_custom_config(COMPILED, {"gpu_type": "NVIDIA_TESLA_T4", "gpu_count": 0, "machine_type": ""})
    assert _pool(config)["machine_spec"] == {"machine_type": "n1-standard-8"}
    assert _pool(config)["container_spec"]["image_uri"] == "cpu-image"
    assert config["ai_platform_vertex_region"] == "europe-west4" and config["gpu_count"] == 0


@pytest.mark.parametrize("values,images,message", [
    ({"gpu_count": 2}, None, "gpu_count=2 needs a gpu_type"),
    ({"gpu_count": 1, "gpu_type": "NVIDIA_L4"}, {"cpu": "cpu-image", "gpu": ""}, "compiled without a CUDA trainer"),
    ({"gpu_count": -1, "gpu_type": "NVIDIA_L4"}, None, "negative"),
])
def test_machine_settings_that_cannot_make_a_job_fail_before_it_starts(values, images, message):
    from pipeline.vertex_training import MachineSpecError, run_custom_config

    compiled = copy.deepcopy(COMPILED)
    if images is not None:
        compiled["registrar_trainer_images"] = images
    with pytest.raises(MachineSpecError, match=message):
        run_custom_config(compiled, values)


def test_without_hyperparameters_the_compiled_job_runs(tmp_path):
    executor = capturing_executor()
    executor().Do({}, {}, {"custom_config": json.dumps(COMPILED)})
    config = json.loads(executor.launched["custom_config"])
    assert _pool(config)["machine_spec"] == {"machine_type": "n1-standard-8"}
    assert _pool(config)["container_spec"]["image_uri"] == "cpu-image"
