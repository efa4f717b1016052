"""``python -m pipeline.cuda_check``: is this environment able to train on GPUs? Run when the CUDA trainer image
is built (pipeline/Dockerfile.gpu), where no GPU is attached: it checks what can be checked without one, the
pinned TensorFlow, built with CUDA, and the CUDA runtime, cuBLAS and cuDNN libraries it loads (from the system
loader path or from NVIDIA's pip packages). Exit 0 when all are there, 1 with what is missing otherwise.
"""
from __future__ import annotations

import ctypes
import glob
import importlib.util
import os
import sys

# TensorFlow 2.16.2 is built against CUDA 12.3 and cuDNN 8.9 (tf.sysconfig.get_build_info()).
LIBRARIES = {"libcudart.so.12": "cuda_runtime", "libcublas.so.12": "cublas", "libcudnn.so.8": "cudnn"}
PINNED_TENSORFLOW = "2.16.2"


def library_found(name: str, pip_package: str) -> bool:
    try:
        ctypes.CDLL(name)
        return True
    except OSError:
        pass
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        if glob.glob(os.path.join(root, pip_package, "lib", name)):
            return True
    return False


def problems() -> list[str]:
    found = []
    try:
        import tensorflow as tf
    except ImportError as exc:
        return [f"TensorFlow cannot be imported: {exc}"]
    if tf.__version__ != PINNED_TENSORFLOW:
        found.append(f"TensorFlow {tf.__version__}, not the pinned {PINNED_TENSORFLOW}")
    if not tf.test.is_built_with_cuda():
        found.append("TensorFlow is not built with CUDA")
    found += [f"{name} not found (system loader path or the nvidia-{package.replace('_', '-')}-cu12 package)"
              for name, package in LIBRARIES.items() if not library_found(name, package)]
    return found


def main() -> int:
    missing = problems()
    if missing:
        print("cannot train on GPUs here: " + "; ".join(missing), file=sys.stderr)
        return 1
    print(f"TensorFlow {PINNED_TENSORFLOW} with CUDA: " + ", ".join(LIBRARIES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
