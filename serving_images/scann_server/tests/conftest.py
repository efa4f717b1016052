"""A small serving bundle built with TensorFlow / numpy, shaped like the pipeline's export: a query tower with the
4-input serving signature, clustered candidates with 12-character product ids, serving_config.json."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402
import string  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

NUM_CANDIDATES = 3000
DIM = 16
CLUSTERS = 30
BUCKETS = 997
MODEL_NAME = "recs"
MODEL_VERSION = "20261123t070000"
SCANN = {"distance_measure": "dot_product", "num_neighbors": 20, "num_leaves": 50, "num_leaves_to_search": 20,
         "training_sample_size": NUM_CANDIDATES, "dimensions_per_block": 2,
         "anisotropic_quantization_threshold": 0.2, "reordering_num_neighbors": 100}


def product_ids(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    alphabet = np.array(list(string.ascii_uppercase + string.digits))
    ids: set[str] = set()
    while len(ids) < n:
        ids.add("P" + "".join(rng.choice(alphabet, 11)))
    out = sorted(ids)
    rng.shuffle(out)
    return out


def make_bundle(path, num_candidates=NUM_CANDIDATES, algorithm="scann", scann=None, top_k=20, seed=3) -> dict:
    """Writes a bundle; returns {"ids": product ids, "centers": cluster centers}."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    centers *= 3.0 / np.linalg.norm(centers, axis=1, keepdims=True)
    members = rng.integers(0, CLUSTERS, num_candidates)
    candidates = (centers[members] + 0.3 * rng.normal(size=(num_candidates, DIM))).astype(np.float32)
    # Each customer bucket sits between four clusters, so its exact top-k spans several of ScaNN's partitions and
    # an index that searches too few of them shows (test_scann_api: the one-leaf recall).
    mix = np.zeros((BUCKETS, CLUSTERS))
    for row in mix:
        row[rng.choice(CLUSTERS, 4, replace=False)] = rng.uniform(0.5, 1.0, 4)
    customer_table = mix @ centers
    customer_table *= 3.0 / np.linalg.norm(customer_table, axis=1, keepdims=True)
    customer_table += 0.1 * rng.normal(size=(BUCKETS, DIM))

    class QueryTower(tf.Module):
        def __init__(self):
            super().__init__()
            self.customer = tf.Variable(customer_table.astype(np.float32), trainable=False)
            self.city = tf.Variable(0.05 * rng.normal(size=(50, DIM)).astype(np.float32), trainable=False)
            self.segment = tf.Variable(0.05 * rng.normal(size=(10, DIM)).astype(np.float32), trainable=False)
            self.revenue = tf.Variable(0.01 * rng.normal(size=(DIM,)).astype(np.float32), trainable=False)
            dense = np.eye(DIM) + 0.02 * rng.normal(size=(DIM, DIM))
            self.dense = tf.Variable(dense.astype(np.float32), trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="customer_id"),
                                      tf.TensorSpec([None], tf.string, name="city"),
                                      tf.TensorSpec([None], tf.string, name="segment"),
                                      tf.TensorSpec([None], tf.float32, name="revenue")])
        def serve(self, customer_id, city, segment, revenue):
            h = (tf.gather(self.customer, tf.strings.to_hash_bucket_fast(customer_id, BUCKETS))
                 + tf.gather(self.city, tf.strings.to_hash_bucket_fast(city, 50))
                 + tf.gather(self.segment, tf.strings.to_hash_bucket_fast(segment, 10))
                 + tf.math.log1p(tf.maximum(revenue, 0.0))[:, None] * self.revenue[None, :])
            return {"query_embedding": tf.matmul(h, self.dense)}

    os.makedirs(path, exist_ok=True)
    tower = QueryTower()
    tf.saved_model.save(tower, os.path.join(path, "query_tower"), signatures={"serving_default": tower.serve})
    np.save(os.path.join(path, "candidates.npy"), candidates)
    ids = product_ids(num_candidates, seed)
    with open(os.path.join(path, "product_ids.json"), "w") as fh:
        json.dump(ids, fh)
    with open(os.path.join(path, "serving_config.json"), "w") as fh:
        json.dump({"retrieval_algorithm": algorithm, "scann": dict(scann or SCANN), "embedding_dim": DIM,
                   "num_candidates": num_candidates, "top_k": top_k, "model_type": "retrieval",
                   "query_tower": {"inputs": ["customer_id", "city", "segment", "revenue"],
                                   "output": "query_embedding"}}, fh, indent=2)
    return {"ids": ids}


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """(bundle directory, product ids); its serving_config says scann."""
    root = tmp_path_factory.mktemp("bundles") / "recs_serving_bundle" / MODEL_VERSION
    made = make_bundle(str(root))
    return str(root), made["ids"]


def env_for(bundle_dir: str, **extra) -> dict:
    env = {"MODEL_NAME": MODEL_NAME, "MODEL_VERSION": MODEL_VERSION, "BUNDLE_PATH": bundle_dir,
           "SCANN_MIN_CANDIDATES": "1000", "MAX_TOP_K": "1000"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def exact(bundle_dir: str, rows: list[dict], k: int) -> tuple[list[list[str]], np.ndarray]:
    """Exact top-k computed independently of the server: the SavedModel and numpy."""
    import tensorflow as tf

    fn = tf.saved_model.load(os.path.join(bundle_dir, "query_tower")).signatures["serving_default"]
    q = fn(customer_id=tf.constant([r["customer_id"] for r in rows]), city=tf.constant([r["city"] for r in rows]),
           segment=tf.constant([r["segment"] for r in rows]),
           revenue=tf.constant([r["revenue"] for r in rows], tf.float32))["query_embedding"].numpy()
    candidates = np.load(os.path.join(bundle_dir, "candidates.npy"))
    with open(os.path.join(bundle_dir, "product_ids.json")) as fh:
        ids = json.load(fh)
    scores = q @ candidates.T
    order = np.argsort(-scores, axis=1)[:, :k]
    return [[ids[j] for j in row] for row in order], np.take_along_axis(scores, order, axis=1)


def customers(n: int, seed: int = 11) -> list[dict]:
    rng = np.random.default_rng(seed)
    cities, segments = ["Warsaw", "Lyon", "Porto", "Kyiv", "Oslo"], ["retail", "enterprise", "smb"]
    return [{"customer_id": f"CUST{int(i):06d}", "city": cities[int(rng.integers(0, 5))],
             "segment": segments[int(rng.integers(0, 3))], "revenue": float(rng.uniform(0, 90000))}
            for i in rng.choice(100000, n, replace=False)]
