"""The loaded model: bundle + index, chosen once at start-up."""

from __future__ import annotations

import logging
import os

import numpy as np

from scann_server.bundle import INDEX_DIR, Bundle, load_bundle
from scann_server.config import ServerConfig
from scann_server.retrieval import BruteForceIndex, ScannIndex, StaleIndex, default_scann_params, fingerprint

log = logging.getLogger("scann_server")


class Servable:
    def __init__(self, config: ServerConfig, bundle: Bundle):
        self.config = config
        self.bundle = bundle
        n = bundle.num_candidates
        configured = config.retrieval_algorithm or bundle.serving_config.get("retrieval_algorithm", "brute_force")
        if configured not in ("scann", "brute_force"):
            raise ValueError(f"serving_config.json retrieval_algorithm {configured!r} is not scann or brute_force")
        self.max_top_k = min(config.max_top_k, n)
        self.default_top_k = max(1, min(int(bundle.serving_config.get("top_k", 100)), self.max_top_k))
        self.retrieval = {"configured_algorithm": configured,
                          "configured_by": "RETRIEVAL_ALGORITHM" if config.retrieval_algorithm else
                          "serving_config.json", "num_candidates": n, "embedding_dim": bundle.embedding_dim,
                          "default_top_k": self.default_top_k, "max_top_k": self.max_top_k}
        if configured == "scann" and n < config.scann_min_candidates:
            self.index = BruteForceIndex(bundle.candidates)
            self.retrieval["fallback"] = (f"brute force: {n} candidates is below SCANN_MIN_CANDIDATES="
                                          f"{config.scann_min_candidates}")
        elif configured == "scann":
            self.index = self._scann_index()
        else:
            self.index = BruteForceIndex(bundle.candidates)
        self.retrieval["algorithm"] = self.index.algorithm
        self.retrieval.update(self.index.info)
        log.info("serving %s version %s: %s", config.model_name, config.model_version, self.retrieval)

    def _scann_index(self) -> ScannIndex:
        bundle = self.bundle
        candidates_fp = fingerprint(os.path.join(bundle.path, "candidates.npy"))
        index_dir = os.path.join(bundle.path, INDEX_DIR)
        stale = None
        if os.path.isdir(index_dir):
            try:
                return ScannIndex.load(index_dir, bundle.candidates, candidates_fp)
            except StaleIndex as exc:
                stale = str(exc)
                log.warning("ignoring the serialized ScaNN index: %s; building one", exc)
        params = bundle.serving_config.get("scann") or default_scann_params(bundle.num_candidates, self.default_top_k)
        index = ScannIndex.build(bundle.candidates, params)
        if stale:
            index.info["stale_serialized_index"] = stale
        return index

    @classmethod
    def load(cls, config: ServerConfig, local_dir: str) -> Servable:
        return cls(config, load_bundle(local_dir))

    def embed(self, features: dict[str, np.ndarray]) -> np.ndarray:
        import tensorflow as tf

        tensors = {name: tf.constant(features[name], dtype=dtype) for name, dtype in self.bundle.inputs.items()}
        out = self.bundle.query_fn(**tensors)[self.bundle.output].numpy()
        if out.ndim != 2 or out.shape[1] != self.bundle.embedding_dim:
            raise RuntimeError(f"query tower returned {list(out.shape)}, expected [batch, {self.bundle.embedding_dim}]")
        return np.ascontiguousarray(out, dtype=np.float32)

    def recommend(self, features: dict[str, np.ndarray], k: int) -> tuple[list[list[str]], list[list[float]]]:
        idx, scores = self.index.search(self.embed(features), k)
        ids = self.bundle.product_ids
        return [[ids[j] for j in row] for row in idx.tolist()], scores.tolist()

    def status(self) -> dict:
        info = dict(self.retrieval)
        if isinstance(self.index, ScannIndex):
            info["exact_fallback_queries"] = self.index.exact_fallbacks
        return info
