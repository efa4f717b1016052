"""TFX Trainer module: ``run_fn`` trains a TFRS model, exports the serving model, the ScaNN serving bundle and
``training_metrics.json``.

``custom_config`` keys (all optional): model_type, epochs, batch_size, embedding_dim, learning_rate,
optimizer ("adam" | "adagrad"), early_stopping_patience, top_k, gpu_count,
retrieval_algorithm ("auto" | "brute_force" | "scann"), scann_min_candidates, retrieval_weight, rating_weight.

Early stopping ends training but keeps the last epoch's weights, so the exported model is the one the
"final" metrics (validation arrays' last epoch) describe.
"""
from __future__ import annotations

import json
import logging
import math
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

try:
    from pipeline.models import features as F
    from pipeline.models import metrics as M
    from pipeline.models import multitask, ranking, retrieval, towers
except ImportError:  # user-module wheel
    import features as F  # type: ignore[no-redef]
    import metrics as M  # type: ignore[no-redef]
    import multitask  # type: ignore[no-redef]
    import ranking  # type: ignore[no-redef]
    import retrieval  # type: ignore[no-redef]
    import towers  # type: ignore[no-redef]

DEFAULTS = {
    "model_type": "retrieval",
    "epochs": 5,
    "batch_size": 256,
    "embedding_dim": 32,
    "learning_rate": 0.01,
    "optimizer": "adam",
    "early_stopping_patience": 2,
    "top_k": 100,
    "gpu_count": 0,
    "retrieval_algorithm": "auto",
    "scann_min_candidates": 10000,
    "retrieval_weight": 1.0,
    "rating_weight": 1.0,
}
SERVING_INPUTS = {"customer_id": tf.string, "city": tf.string, "segment": tf.string, "revenue": tf.float32}
METRICS_FILE = "training_metrics.json"
BUNDLE_DIR = "serving_bundle"


def config_from(custom_config) -> dict:
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in (custom_config or {}).items() if v is not None})
    if cfg["model_type"] not in M.MODEL_TYPES:
        raise ValueError(f"unknown model_type {cfg['model_type']!r}")
    return cfg


def distribution_strategy(gpu_count: int):
    """MirroredStrategy over the visible GPUs when GPUs were requested; the default strategy otherwise."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpu_count and gpus:
        return tf.distribute.MirroredStrategy(), "mirrored"
    if gpu_count and not gpus:
        logging.warning("%d GPU(s) requested but none visible; training on CPU", gpu_count)
    return tf.distribute.get_strategy(), "default"


def vocab_sizes(tf_transform_output) -> dict:
    return {name: int(tf_transform_output.vocabulary_size_by_name(F.vocab_name(name))) for name in F.VOCAB_FEATURES}


def original_product_ids(tf_transform_output) -> list:
    """Transform vocabulary of product_id: position i holds the ORIGINAL id of vocabulary index i."""
    return [v.decode() if isinstance(v, bytes) else str(v)
            for v in tf_transform_output.vocabulary_by_name(F.vocab_name(F.PRODUCT_ID))]


def collect_candidates(datasets, num_known_products: int) -> dict:
    """Unique products (by vocabulary index) with their transformed features; OOV products are left out."""
    seen = {}
    for ds in datasets:
        if ds is None:
            continue
        for batch in ds.as_numpy_iterator():
            pid = np.reshape(batch[F.xf(F.PRODUCT_ID)], [-1])
            cat = np.reshape(batch[F.xf("category")], [-1])
            price = np.reshape(batch[F.xf("price")], [-1])
            for p, c, pr in zip(pid, cat, price):
                if int(p) < num_known_products and int(p) not in seen:
                    seen[int(p)] = (int(c), float(pr))
    idx = sorted(seen)
    return {
        F.xf(F.PRODUCT_ID): np.array(idx, dtype=np.int64),
        F.xf("category"): np.array([seen[i][0] for i in idx], dtype=np.int64),
        F.xf("price"): np.array([seen[i][1] for i in idx], dtype=np.float32),
    }


def build_model(cfg, sizes, candidate_features):
    kind = cfg["model_type"]
    dim = int(cfg["embedding_dim"])
    if kind == "retrieval":
        model = retrieval.build(sizes, dim, candidate_features)
    elif kind == "ranking":
        model = ranking.build(sizes, dim)
    else:
        model = multitask.build(sizes, dim, candidate_features, cfg["retrieval_weight"], cfg["rating_weight"])
    optimizers = {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad}
    model.compile(optimizer=optimizers[cfg["optimizer"]](learning_rate=float(cfg["learning_rate"])))
    return model


def early_stopping_monitor(model_type: str, num_candidates: int):
    """Retrieval quality is recall@K (the in-batch validation loss is not); ranking watches RMSE."""
    if model_type == "ranking":
        return "val_rmse", "min"
    k = max(towers.recall_ks(num_candidates))
    return f"val_factorized_top_k/top_{k}_categorical_accuracy", "max"


def choose_algorithm(cfg, num_candidates: int):
    algo = cfg["retrieval_algorithm"]
    if cfg["model_type"] == "ranking":
        return None
    if algo == "auto":
        algo = "scann" if num_candidates >= int(cfg["scann_min_candidates"]) else "brute_force"
    if algo not in ("brute_force", "scann"):
        raise ValueError(f"unknown retrieval_algorithm {algo!r}")
    return algo


def scann_params(num_candidates: int, k: int) -> dict:
    leaves = max(1, int(round(math.sqrt(num_candidates))))
    return {
        "distance_measure": "dot_product",
        "num_neighbors": k,
        "num_leaves": leaves,
        "num_leaves_to_search": max(1, leaves // 10),
        "training_sample_size": num_candidates,
        "dimensions_per_block": 2,
        "anisotropic_quantization_threshold": 0.2,
        "reordering_num_neighbors": max(k, 4 * k),
    }


class _RawInput(tf.Module):
    """Builds the full raw feature dict Transform expects from the customer-only serving inputs."""

    def __init__(self, tf_transform_output):
        super().__init__()
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._spec = tf_transform_output.raw_feature_spec()

    def transform(self, inputs):
        batch = tf.shape(inputs["customer_id"])[0]
        raw = {}
        for name, spec in self._spec.items():
            shape = tf.concat([[batch], tf.constant(list(spec.shape), tf.int32)], 0)
            if name in inputs:
                value = tf.cast(inputs[name], spec.dtype) if spec.dtype != tf.string else inputs[name]
                raw[name] = tf.reshape(value, shape)
            elif spec.dtype == tf.string:
                raw[name] = tf.fill(shape, "")
            else:
                raw[name] = tf.zeros(shape, spec.dtype)
        return self.tft_layer(raw)


def _signature():
    return [tf.TensorSpec([None], dtype, name=name) for name, dtype in SERVING_INPUTS.items()]


class ServingModel(tf.Module):
    """Raw customer features in; ``product_ids`` (original ids) and ``scores`` out."""

    def __init__(self, model, model_type, tf_transform_output, candidate_embeddings, product_ids, k):
        super().__init__()
        self.raw_input = _RawInput(tf_transform_output)
        self.query_tower = model.query_tower
        self.rating_head = getattr(model, "rating_head", None) if model_type == "ranking" else None
        self.candidate_embeddings = tf.Variable(candidate_embeddings.astype(np.float32), trainable=False)
        self.product_ids = tf.Variable(tf.constant(product_ids, tf.string), trainable=False)
        self.k = int(min(k, len(product_ids)))
        self.serve = tf.function(self._serve, input_signature=_signature())

    def _serve(self, customer_id, city, segment, revenue):
        xf = self.raw_input.transform(
            {"customer_id": customer_id, "city": city, "segment": segment, "revenue": revenue})
        q = self.query_tower(xf)
        if self.rating_head is not None:
            b = tf.shape(q)[0]
            n = tf.shape(self.candidate_embeddings)[0]
            qq = tf.repeat(tf.expand_dims(q, 1), n, axis=1)
            cc = tf.repeat(tf.expand_dims(self.candidate_embeddings, 0), b, axis=0)
            scores = tf.squeeze(self.rating_head(qq, cc), -1)
        else:
            scores = tf.linalg.matmul(q, self.candidate_embeddings, transpose_b=True)
        top = tf.math.top_k(scores, k=self.k)
        return {"product_ids": tf.gather(self.product_ids, top.indices), "scores": top.values}


class QueryTowerModel(tf.Module):
    """Raw customer features in; ``query_embedding`` out. Standard ops only (for the ScaNN server)."""

    def __init__(self, model, tf_transform_output):
        super().__init__()
        self.raw_input = _RawInput(tf_transform_output)
        self.query_tower = model.query_tower
        self.serve = tf.function(self._serve, input_signature=_signature())

    def _serve(self, customer_id, city, segment, revenue):
        xf = self.raw_input.transform(
            {"customer_id": customer_id, "city": city, "segment": segment, "revenue": revenue})
        return {"query_embedding": self.query_tower(xf)}


def _save(module, path):
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def train_and_export(train_ds, eval_ds, test_ds, tf_transform_output, custom_config, serving_model_dir,
                     bundle_dir, metrics_path, candidate_sources=None) -> dict:
    """Train, evaluate, export; returns the metrics dict that was written to ``metrics_path``."""
    cfg = config_from(custom_config)
    strategy, strategy_name = distribution_strategy(int(cfg["gpu_count"]))
    sizes = vocab_sizes(tf_transform_output)
    product_vocab = original_product_ids(tf_transform_output)
    candidates = collect_candidates(candidate_sources or [train_ds, eval_ds, test_ds], len(product_vocab))
    num_candidates = int(len(candidates[F.xf(F.PRODUCT_ID)]))
    if num_candidates == 0:
        raise ValueError("no candidate products found in the data")
    with strategy.scope():
        model = build_model(cfg, sizes, candidates)
    monitor, mode = early_stopping_monitor(cfg["model_type"], num_candidates)
    callbacks = [tf.keras.callbacks.EarlyStopping(
        monitor=monitor, mode=mode, patience=int(cfg["early_stopping_patience"]), restore_best_weights=False)]
    history = model.fit(train_ds, validation_data=eval_ds, epochs=int(cfg["epochs"]), callbacks=callbacks, verbose=2)
    test_results = model.evaluate(test_ds if test_ds is not None else eval_ds, return_dict=True, verbose=0)
    result = M.extract_metrics(history.history, test_results, cfg["model_type"])

    candidate_embeddings = model.candidate_tower(candidates).numpy().astype(np.float32)
    # Map vocabulary indices to the ORIGINAL product ids: serving must never return indices.
    product_ids = [product_vocab[i] for i in candidates[F.xf(F.PRODUCT_ID)]]
    k = min(int(cfg["top_k"]), num_candidates)
    _save(ServingModel(model, cfg["model_type"], tf_transform_output, candidate_embeddings, product_ids, k),
          serving_model_dir)
    algorithm = choose_algorithm(cfg, num_candidates)
    if algorithm is not None and bundle_dir:
        tf.io.gfile.makedirs(bundle_dir)
        _save(QueryTowerModel(model, tf_transform_output), os.path.join(bundle_dir, "query_tower"))
        with tf.io.gfile.GFile(os.path.join(bundle_dir, "candidates.npy"), "wb") as fh:
            np.save(fh, candidate_embeddings)
        with tf.io.gfile.GFile(os.path.join(bundle_dir, "product_ids.json"), "w") as fh:
            fh.write(json.dumps(product_ids))
        with tf.io.gfile.GFile(os.path.join(bundle_dir, "serving_config.json"), "w") as fh:
            fh.write(json.dumps({
                "retrieval_algorithm": algorithm,
                "scann": scann_params(num_candidates, k),
                "embedding_dim": int(candidate_embeddings.shape[1]),
                "num_candidates": num_candidates,
                "top_k": k,
                "model_type": cfg["model_type"],
                "query_tower": {"inputs": list(SERVING_INPUTS), "output": "query_embedding"},
            }, indent=2))
    result["info"] = {
        "retrieval_algorithm": algorithm,
        "num_candidates": num_candidates,
        "distribution_strategy": strategy_name,
        "replicas": int(strategy.num_replicas_in_sync),
        "config": {k2: cfg[k2] for k2 in sorted(cfg)},
        "test_split": "test" if test_ds is not None else "eval (no test split found)",
    }
    tf.io.gfile.makedirs(os.path.dirname(metrics_path))
    with tf.io.gfile.GFile(metrics_path, "w") as fh:
        fh.write(json.dumps(result, indent=2, sort_keys=True))
    return result


def _test_files(train_files):
    patterns = [p.replace("Split-train", "Split-test") for p in train_files]
    if patterns == list(train_files):
        return None
    return patterns if all(tf.io.gfile.glob(p) for p in patterns) else None


def run_fn(fn_args):
    """TFX Trainer entry point (generic trainer, TF2)."""
    import tensorflow_transform as tft
    from tfx_bsl.public import tfxio

    cfg = config_from(fn_args.custom_config)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    schema = tf_transform_output.transformed_metadata.schema

    def dataset(files, shuffle):
        return fn_args.data_accessor.tf_dataset_factory(
            files, tfxio.TensorFlowDatasetOptions(batch_size=int(cfg["batch_size"]), num_epochs=1, shuffle=shuffle),
            schema)

    test_files = _test_files(fn_args.train_files)
    train_ds = dataset(fn_args.train_files, True)
    eval_ds = dataset(fn_args.eval_files, False)
    test_ds = dataset(test_files, False) if test_files else None
    bundle_dir = os.path.join(os.path.dirname(fn_args.serving_model_dir.rstrip("/")), BUNDLE_DIR)
    metrics_path = os.path.join(fn_args.model_run_dir, METRICS_FILE)
    train_and_export(train_ds, eval_ds, test_ds, tf_transform_output, cfg, fn_args.serving_model_dir,
                     bundle_dir, metrics_path)
