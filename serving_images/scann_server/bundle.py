"""The serving bundle the pipeline exports next to the pushed model (``<push base>_serving_bundle/<version>/``):

    query_tower/          SavedModel, signature serving_default: raw features -> {"query_embedding": [B, D]}
    candidates.npy        float32 [N, D] candidate embeddings
    product_ids.json      the N catalogue product ids, row-aligned with candidates.npy
    serving_config.json   retrieval_algorithm, scann parameters, embedding_dim, num_candidates, top_k, query_tower
    scann_index/          optional: a serialized ScaNN searcher (python -m scann_server.build_index)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any

REQUIRED = ("serving_config.json", "candidates.npy", "product_ids.json", "query_tower/saved_model.pb")
INDEX_DIR = "scann_index"
_DTYPES = {"string": "DT_STRING", "float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int32": "DT_INT32",
           "int64": "DT_INT64", "bool": "DT_BOOL"}


class BundleError(RuntimeError):
    """The bundle is missing a file or is inconsistent; the message names the file."""


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def _isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def _listdir(path: str) -> list[str]:
    return [p.rstrip("/") for p in (_gfile().listdir(path) if is_remote(path) else os.listdir(path))]


def check_bundle(path: str) -> None:
    """Raises BundleError naming the first missing file (and hinting at the versioned directory if ``path`` is the
    unversioned parent)."""
    base = local_path(path).rstrip("/")
    if not _isdir(base):
        raise BundleError(f"BUNDLE_PATH {path!r} is not a directory (or does not exist)")
    for name in REQUIRED:
        target = f"{base}/{name}"
        if not _exists(target):
            hint = ""
            children = [c for c in _listdir(base) if _exists(f"{base}/{c}/serving_config.json")]
            if children:
                hint = (f"; {path!r} looks like the unversioned bundle base: point BUNDLE_PATH at a version "
                        f"directory, e.g. {base}/{sorted(children)[-1]}/")
            raise BundleError(f"serving bundle incomplete: {target} is missing{hint}")


def stage_bundle(path: str) -> tuple[str, str | None]:
    """Returns (local directory, temp directory to delete later or None). gs:// bundles are copied locally."""
    check_bundle(path)
    if not is_remote(path):
        return os.path.abspath(local_path(path)), None
    tmp = tempfile.mkdtemp(prefix="scann-bundle-")
    try:
        copy_tree(path.rstrip("/"), tmp)
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, tmp


def copy_tree(src: str, dest: str) -> None:
    """Recursive copy between any two tf.io.gfile paths (gs://, local)."""
    gfile = _gfile()
    src = src.rstrip("/")
    for dirpath, _, files in gfile.walk(src):
        rel = dirpath.rstrip("/")[len(src):].lstrip("/")
        target_dir = os.path.join(dest, rel) if rel else dest
        gfile.makedirs(target_dir)
        for name in files:
            gfile.copy(f"{dirpath.rstrip('/')}/{name}", os.path.join(target_dir, name), overwrite=True)


@dataclass
class Bundle:
    path: str
    serving_config: dict
    candidates: Any  # numpy float32 [N, D], memory-mapped
    product_ids: list[str]
    query_fn: Any  # the query tower's serving_default ConcreteFunction
    inputs: dict[str, Any]  # feature name -> tf.DType, in signature order
    output: str
    extra: dict = field(default_factory=dict)

    @property
    def num_candidates(self) -> int:
        return int(self.candidates.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.candidates.shape[1])

    def input_metadata(self) -> dict:
        return {name: {"dtype": dtype_name(dtype), "tensor_shape": {"dim": [{"size": "-1", "name": ""}],
                                                                    "unknown_rank": False},
                       "name": f"serving_default_{name}:0"} for name, dtype in self.inputs.items()}


def dtype_name(dtype) -> str:
    return _DTYPES.get(dtype.name, f"DT_{dtype.name.upper()}")


def load_bundle(directory: str) -> Bundle:
    """Loads a staged (local) bundle and checks that its parts agree with each other."""
    import numpy as np
    import tensorflow as tf

    def read_json(name):
        try:
            with open(os.path.join(directory, name)) as fh:
                return json.load(fh)
        except (OSError, ValueError) as exc:
            raise BundleError(f"cannot read {os.path.join(directory, name)}: {exc}") from exc

    config = read_json("serving_config.json")
    if not isinstance(config, dict):
        raise BundleError(f"{directory}/serving_config.json must hold a JSON object")
    product_ids = read_json("product_ids.json")
    if not isinstance(product_ids, list) or not all(isinstance(p, str) for p in product_ids):
        raise BundleError(f"{directory}/product_ids.json must hold a JSON list of product id strings")
    try:
        candidates = np.load(os.path.join(directory, "candidates.npy"), mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {directory}/candidates.npy: {exc}") from exc
    if candidates.ndim != 2 or candidates.dtype != np.float32 or candidates.shape[0] == 0:
        raise BundleError(f"{directory}/candidates.npy must be a non-empty float32 [N, D] array, "
                          f"got {candidates.dtype} {list(candidates.shape)}")
    if candidates.shape[0] != len(product_ids):
        raise BundleError(f"{directory}: candidates.npy has {candidates.shape[0]} rows but product_ids.json has "
                          f"{len(product_ids)} ids")
    for key, actual in (("num_candidates", candidates.shape[0]), ("embedding_dim", candidates.shape[1])):
        if key in config and int(config[key]) != actual:
            raise BundleError(f"{directory}/serving_config.json says {key}={config[key]} but candidates.npy "
                              f"has {actual}")

    tower_dir = os.path.join(directory, "query_tower")
    try:
        loaded = tf.saved_model.load(tower_dir)
        query_fn = loaded.signatures["serving_default"]
    except KeyError:
        raise BundleError(f"{tower_dir} has no serving_default signature") from None
    except Exception as exc:
        raise BundleError(f"cannot load the query tower SavedModel {tower_dir}: {exc}") from exc
    specs = query_fn.structured_input_signature[1]
    inputs = {name: specs[name].dtype for name in sorted(specs)}
    declared = (config.get("query_tower") or {}).get("inputs")
    if declared:
        if sorted(declared) != sorted(inputs):
            raise BundleError(f"{directory}/serving_config.json declares query tower inputs {sorted(declared)} but "
                              f"the SavedModel's serving_default takes {sorted(inputs)}")
        inputs = {name: specs[name].dtype for name in declared}
    for name, spec in specs.items():
        if spec.shape.rank != 1:
            raise BundleError(f"{tower_dir}: input {name!r} has shape {spec.shape}; the server feeds rank-1 [batch] "
                              f"inputs only")
    output = (config.get("query_tower") or {}).get("output", "query_embedding")
    if output not in query_fn.structured_outputs:
        raise BundleError(f"{tower_dir}: serving_default has no output {output!r} "
                          f"(outputs: {sorted(query_fn.structured_outputs)})")
    bundle = Bundle(directory, config, candidates, product_ids, query_fn, inputs, output)
    bundle.extra["saved_model"] = loaded  # keeps the variables the signature captures alive
    return bundle
