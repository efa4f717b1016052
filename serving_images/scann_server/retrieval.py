"""Top-k maximum inner product search over the candidate embeddings: ScaNN (tree + asymmetric hashing + exact
reorder, numpy API) or exact brute force."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time

import numpy as np

INDEX_META = "registrar_index.json"
_BRUTE_FORCE_ROWS = 32  # queries per matmul block: bounds the [rows, N] score matrix (128 MB at N = 1M)


def default_scann_params(num_candidates: int, k: int) -> dict:
    """Same rule as the pipeline's trainer.scann_params (used when serving_config.json carries none)."""
    leaves = max(1, int(round(math.sqrt(num_candidates))))
    return {"distance_measure": "dot_product", "num_neighbors": k, "num_leaves": leaves,
            "num_leaves_to_search": max(1, leaves // 10), "training_sample_size": num_candidates,
            "dimensions_per_block": 2, "anisotropic_quantization_threshold": 0.2,
            "reordering_num_neighbors": max(k, 4 * k)}


def fingerprint(candidates_path: str) -> str:
    digest = hashlib.sha256()
    with open(candidates_path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def exact_top_k(candidates: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64 [B, k], scores float32 [B, k]) by descending dot product."""
    n = candidates.shape[0]
    k = min(k, n)
    out_idx = np.empty((len(queries), k), np.int64)
    out_scores = np.empty((len(queries), k), np.float32)
    for start in range(0, len(queries), _BRUTE_FORCE_ROWS):
        scores = queries[start:start + _BRUTE_FORCE_ROWS] @ candidates.T
        if k < n:
            top = np.argpartition(scores, n - k, axis=1)[:, n - k:]
        else:
            top = np.broadcast_to(np.arange(n), scores.shape)
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        out_idx[start:start + len(scores)] = np.take_along_axis(top, order, axis=1)
        out_scores[start:start + len(scores)] = np.take_along_axis(top_scores, order, axis=1)
    return out_idx, out_scores


class BruteForceIndex:
    algorithm = "brute_force"

    def __init__(self, candidates: np.ndarray):
        self.candidates = candidates
        self.info = {"index_source": "exact search over candidates.npy"}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_top_k(self.candidates, queries, k)


class ScannIndex:
    algorithm = "scann"

    def __init__(self, searcher, candidates: np.ndarray, params: dict, info: dict):
        self.searcher = searcher
        self.candidates = candidates
        self.params = params
        self.info = info
        self.exact_fallbacks = 0  # queries whose searched leaves held fewer than k candidates

    @classmethod
    def build(cls, candidates: np.ndarray, params: dict) -> ScannIndex:
        from scann.scann_ops.py import scann_ops_pybind

        params = _clamped(params, candidates.shape[0])
        started = time.perf_counter()
        data = np.ascontiguousarray(candidates, dtype=np.float32)
        searcher = (scann_ops_pybind.builder(data, int(params["num_neighbors"]), "dot_product")
                    .tree(num_leaves=params["num_leaves"], num_leaves_to_search=params["num_leaves_to_search"],
                          training_sample_size=params["training_sample_size"])
                    .score_ah(params["dimensions_per_block"],
                              anisotropic_quantization_threshold=params["anisotropic_quantization_threshold"])
                    .reorder(params["reordering_num_neighbors"])
                    .set_n_training_threads(os.cpu_count() or 1)
                    .build())
        info = {"index_source": "built at start-up", "build_seconds": round(time.perf_counter() - started, 3)}
        return cls(searcher, candidates, params, info)

    @classmethod
    def load(cls, index_dir: str, candidates: np.ndarray, candidates_fp: str) -> ScannIndex:
        """Loads a searcher written by ``serialize``; raises StaleIndex if it was built from other candidates."""
        from scann.scann_ops.py import scann_ops_pybind

        try:
            with open(os.path.join(index_dir, INDEX_META)) as fh:
                meta = json.load(fh)
        except (OSError, ValueError) as exc:
            raise StaleIndex(f"{index_dir}/{INDEX_META} unreadable ({exc})") from exc
        if meta.get("candidates_sha256") != candidates_fp or meta.get("num_candidates") != candidates.shape[0]:
            raise StaleIndex(f"{index_dir} was built from other candidates (fingerprint differs)")
        started = time.perf_counter()
        # ScaNN records asset paths as they were when serialized; point them at this directory (the bundle may
        # have been copied from GCS or moved) through a scratch directory of links, leaving the bundle untouched.
        scratch = tempfile.mkdtemp(prefix="scann-index-")
        try:
            for name in os.listdir(index_dir):
                if name != "scann_assets.pbtxt":
                    os.symlink(os.path.abspath(os.path.join(index_dir, name)), os.path.join(scratch, name))
            with open(os.path.join(index_dir, "scann_assets.pbtxt")) as fh:
                assets = fh.read()
            assets = re.sub(r'asset_path: "([^"]*)"',
                            lambda m: f'asset_path: "{os.path.join(scratch, os.path.basename(m.group(1)))}"', assets)
            with open(os.path.join(scratch, "scann_assets.pbtxt"), "w") as fh:
                fh.write(assets)
            searcher = scann_ops_pybind.load_searcher(scratch, assets_backcompat_shim=False)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if searcher.size() != candidates.shape[0]:
            raise StaleIndex(f"{index_dir} holds {searcher.size()} points, candidates.npy {candidates.shape[0]}")
        info = {"index_source": f"serialized index {index_dir}",
                "load_seconds": round(time.perf_counter() - started, 3)}
        return cls(searcher, candidates, meta["scann"], info)

    def serialize(self, index_dir: str, candidates_fp: str) -> None:
        os.makedirs(index_dir, exist_ok=True)
        self.searcher.serialize(os.path.abspath(index_dir))
        with open(os.path.join(index_dir, INDEX_META), "w") as fh:
            json.dump({"candidates_sha256": candidates_fp, "num_candidates": int(self.candidates.shape[0]),
                       "embedding_dim": int(self.candidates.shape[1]), "scann": self.params}, fh, indent=2)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.candidates.shape[0])
        pre_reorder = max(int(self.params["reordering_num_neighbors"]), k)
        # The leaves to search are passed on every search: a serialized index keeps the value it was built with,
        # while the pipeline's tuning chose this one on that index (serving_config.json "scann").
        idx, scores = self.searcher.search_batched(queries, final_num_neighbors=k,
                                                   pre_reorder_num_neighbors=pre_reorder,
                                                   leaves_to_search=int(self.params["num_leaves_to_search"]))
        idx = np.asarray(idx, np.int64)
        scores = np.asarray(scores, np.float32)
        # ScaNN pads with NaN scores when the searched leaves hold fewer than k points: answer those exactly.
        short = np.isnan(scores).any(axis=1)
        if short.any():
            self.exact_fallbacks += int(short.sum())
            idx[short], scores[short] = exact_top_k(self.candidates, queries[short], k)
        return idx, scores


class StaleIndex(RuntimeError):
    pass


def _clamped(params: dict, n: int) -> dict:
    params = dict(params)
    params["num_leaves"] = max(1, min(int(params["num_leaves"]), n))
    params["num_leaves_to_search"] = max(1, min(int(params["num_leaves_to_search"]), params["num_leaves"]))
    params["training_sample_size"] = max(1, min(int(params.get("training_sample_size", n)), n))
    params["num_neighbors"] = max(1, min(int(params.get("num_neighbors", 100)), n))
    params["reordering_num_neighbors"] = max(int(params.get("reordering_num_neighbors", 400)),
                                             params["num_neighbors"])
    params["dimensions_per_block"] = int(params.get("dimensions_per_block", 2))
    params["anisotropic_quantization_threshold"] = float(params.get("anisotropic_quantization_threshold", 0.2))
    return params
