"""A tiny serving bundle for tests that need a real model server, built with TensorFlow from `.venv-pipeline`.

The layout is the pipeline's export (what `serving_images/scann_server` loads):

    query_tower/          SavedModel, serving_default: customer_id, city, segment (string [None]), revenue
                          (float32 [None]) -> {"query_embedding": float32 [None, D]}
    retrieval_model/      SavedModel, serving_default: the same inputs -> {"product_ids": [None, top_k],
                          "scores": [None, top_k]} by exact search (what the pipeline pushes for native TF Serving;
                          not part of the ScaNN server's bundle)
    candidates.npy        float32 [N, D]
    product_ids.json      N product ids, row-aligned with candidates.npy
    serving_config.json   retrieval_algorithm, scann, embedding_dim, num_candidates, top_k, model_type, query_tower

TensorFlow is not in the main virtualenv, so the bundle is written by running this file with the pipeline's
interpreter: `.venv-pipeline/bin/python tests/serving_bundle.py OUT_DIR --candidates N --dim D`. Importing it
needs only the standard library (and pytest, for `pipeline_python`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_PYTHON = ROOT / ".venv-pipeline" / "bin" / "python"
FEATURES = ("customer_id", "city", "segment", "revenue")
BUILD_TIMEOUT = 300


@dataclass(frozen=True)
class ServingBundle:
    path: Path
    product_ids: list[str]
    embedding_dim: int
    num_candidates: int

    @staticmethod
    def instance(customer_id: str = "C0001", city: str = "Berlin", segment: str = "smb",
                 revenue: float = 1250.0) -> dict[str, object]:
        """One row-format `instances` entry with every feature the query tower takes."""
        return {"customer_id": customer_id, "city": city, "segment": segment, "revenue": revenue}


def pipeline_python() -> Path:
    """The pipeline's interpreter (TensorFlow, the scann server's dependencies); fails the test without it."""
    import pytest

    if not PIPELINE_PYTHON.exists():
        pytest.fail(f"{PIPELINE_PYTHON} does not exist: these tests run a real model server with TensorFlow; "
                    "run `make pipeline-setup` to create .venv-pipeline", pytrace=False)
    return PIPELINE_PYTHON


def build_serving_bundle(directory: os.PathLike | str, *, num_candidates: int = 64, dim: int = 8,
                         algorithm: str = "brute_force", top_k: int = 10, seed: int = 7,
                         python: os.PathLike | str | None = None) -> ServingBundle:
    """Write a bundle to `directory` with the pipeline's TensorFlow (in a subprocess) and describe it."""
    interpreter = str(python or pipeline_python())
    directory = Path(directory)
    command = [interpreter, str(Path(__file__).resolve()), str(directory), "--candidates", str(num_candidates),
               "--dim", str(dim), "--algorithm", algorithm, "--top-k", str(top_k), "--seed", str(seed)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"building the serving bundle failed ({' '.join(command)}):\n{result.stderr[-3000:]}")
    product_ids = json.loads((directory / "product_ids.json").read_text())
    return ServingBundle(directory, product_ids, dim, num_candidates)


def write_bundle(directory: Path, num_candidates: int, dim: int, algorithm: str, top_k: int, seed: int) -> None:
    """Runs under the pipeline's interpreter."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    buckets = 101
    customer_table = rng.normal(size=(buckets, dim)).astype(np.float32)
    city_table = (0.1 * rng.normal(size=(17, dim))).astype(np.float32)
    segment_table = (0.1 * rng.normal(size=(5, dim))).astype(np.float32)
    revenue_weights = (0.01 * rng.normal(size=(dim,))).astype(np.float32)

    class QueryTower(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.customer = tf.Variable(customer_table, trainable=False)
            self.city = tf.Variable(city_table, trainable=False)
            self.segment = tf.Variable(segment_table, trainable=False)
            self.revenue = tf.Variable(revenue_weights, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="customer_id"),
                                      tf.TensorSpec([None], tf.string, name="city"),
                                      tf.TensorSpec([None], tf.string, name="segment"),
                                      tf.TensorSpec([None], tf.float32, name="revenue")])
        def serve(self, customer_id, city, segment, revenue):
            embedding = (tf.gather(self.customer, tf.strings.to_hash_bucket_fast(customer_id, buckets))
                         + tf.gather(self.city, tf.strings.to_hash_bucket_fast(city, 17))
                         + tf.gather(self.segment, tf.strings.to_hash_bucket_fast(segment, 5))
                         + tf.math.log1p(tf.maximum(revenue, 0.0))[:, None] * self.revenue[None, :])
            return {"query_embedding": embedding}

    directory.mkdir(parents=True, exist_ok=True)
    tower = QueryTower()
    tf.saved_model.save(tower, str(directory / "query_tower"), signatures={"serving_default": tower.serve})
    candidates = rng.normal(size=(num_candidates, dim)).astype(np.float32)
    np.save(directory / "candidates.npy", candidates)
    product_ids = [f"P{i:07d}" for i in range(num_candidates)]
    (directory / "product_ids.json").write_text(json.dumps(product_ids))

    class RetrievalModel(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tower = tower
            self.candidates = tf.Variable(candidates, trainable=False)
            self.ids = tf.Variable(tf.constant(product_ids), trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="customer_id"),
                                      tf.TensorSpec([None], tf.string, name="city"),
                                      tf.TensorSpec([None], tf.string, name="segment"),
                                      tf.TensorSpec([None], tf.float32, name="revenue")])
        def serve(self, customer_id, city, segment, revenue):
            query = self.tower.serve(customer_id, city, segment, revenue)["query_embedding"]
            top = tf.math.top_k(tf.matmul(query, self.candidates, transpose_b=True), k=min(top_k, num_candidates))
            return {"product_ids": tf.gather(self.ids, top.indices), "scores": top.values}

    model = RetrievalModel()
    tf.saved_model.save(model, str(directory / "retrieval_model"), signatures={"serving_default": model.serve})
    (directory / "serving_config.json").write_text(json.dumps({
        "retrieval_algorithm": algorithm, "scann": {}, "embedding_dim": dim, "num_candidates": num_candidates,
        "top_k": top_k, "model_type": "retrieval",
        "query_tower": {"inputs": list(FEATURES), "output": "query_embedding"},
    }, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="write a tiny serving bundle (run with .venv-pipeline/bin/python)")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--dim", type=int, default=8)
    parser.add_argument("--algorithm", default="brute_force", choices=("brute_force", "scann"))
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    write_bundle(args.directory, args.candidates, args.dim, args.algorithm, args.top_k, args.seed)


if __name__ == "__main__":
    sys.exit(main())
