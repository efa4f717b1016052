"""The pipeline's images, checked by what their Dockerfiles say and run (no Docker engine here): the pins match
pipeline/requirements.txt, and the CUDA image's build-time check (python -m pipeline.cuda_check) fails without
CUDA libraries and passes with them."""
import os
import re
import subprocess
import sys
from pathlib import Path

PIPELINE = Path(__file__).resolve().parents[1]
REPO = PIPELINE.parent


def name(package: str) -> str:
    return re.sub(r"[-_.]+", "-", package).lower()  # PEP 503


def pins() -> dict[str, str]:
    lines = (PIPELINE / "requirements.txt").read_text().splitlines()
    return {name(m[1]): m[2] for line in lines if (m := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip()))}


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (PIPELINE / dockerfile).read_text())
    return [(m[1], m[2].strip()) for line in text.splitlines() if (m := re.match(r"^([A-Z]+)\s+(.*)$", line))]


def test_the_cuda_image_is_the_tensorflow_gpu_image_of_the_pinned_tensorflow():
    steps = instructions("Dockerfile.gpu")
    assert steps[0] == ("FROM", f"tensorflow/tensorflow:{pins()['tensorflow']}-gpu")
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "-r /opt/registrar/requirements.txt" in runs and "--ignore-requires-python" in runs
    assert ("COPY", "pipeline/requirements.txt /opt/registrar/requirements.txt") in steps
    assert ("COPY", "pipeline /opt/registrar/pipeline") in steps
    env = " ".join(arg for op, arg in steps if op == "ENV")
    assert "TF_USE_LEGACY_KERAS=1" in env and "PYTHONPATH=/opt/registrar" in env
    assert steps[-1] == ("RUN", "python -m pipeline.cuda_check")  # after the package is in


def test_the_cpu_image_pins_what_requirements_pin():
    steps = instructions("Dockerfile")
    assert steps[0] == ("FROM", f"gcr.io/tfx-oss-public/tfx:{pins()['tfx']}")
    installed = dict(re.findall(r"([A-Za-z0-9_.-]+)==(\S+)", " ".join(arg for op, arg in steps if op == "RUN")))
    assert set(installed) == {"tensorflow-recommenders", "tf-keras", "scann", "threadpoolctl"}
    assert all(pins()[name(package)] == version for package, version in installed.items())
    from pipeline.runners import vertex

    assert vertex.DEFAULT_IMAGE == f"gcr.io/tfx-oss-public/tfx:{pins()['tfx']}"


def _cuda_check(extra_path=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(extra_path or ""), str(REPO)) if p),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "pipeline.cuda_check"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_cuda_check_fails_where_the_cuda_libraries_are_missing():
    import ctypes

    try:
        ctypes.CDLL("libcudnn.so.8")
        import pytest

        pytest.skip("this machine has cuDNN")
    except OSError:
        pass
    result = _cuda_check()
    assert result.returncode == 1
    assert "cannot train on GPUs here" in result.stderr
    for name in ("libcudart.so.12", "libcublas.so.12", "libcudnn.so.8"):
        assert f"{name} not found" in result.stderr


def test_the_cuda_check_passes_with_nvidias_pip_packages(tmp_path):
    # the layout of nvidia-cuda-runtime-cu12 / nvidia-cublas-cu12 / nvidia-cudnn-cu12 (a namespace package)
    for package, library in (("cuda_runtime", "libcudart.so.12"), ("cublas", "libcublas.so.12"),
                             ("cudnn", "libcudnn.so.8")):
        (tmp_path / "nvidia" / package / "lib").mkdir(parents=True)
        (tmp_path / "nvidia" / package / "lib" / library).write_bytes(b"")
    result = _cuda_check(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "TensorFlow 2.16.2 with CUDA" in result.stdout
