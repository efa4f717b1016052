"""TFX Trainer module: ``run_fn`` trains a TFRS model and exports the served SavedModel (``serving_default`` and
``evaluation``, pipeline/models/export.py), the serving bundle (retrieval, multitask: query tower, candidate
embeddings, ScaNN settings measured on them), the candidate tower and ``training_metrics.json``.

``custom_config`` keys (all optional): model_type, epochs, batch_size, embedding_dim, learning_rate,
optimizer ("adam" | "adagrad"), early_stopping_patience, top_k, gpu_count (> 0: MirroredStrategy over that many
GPUs, and a failure when fewer are visible), retrieval_algorithm ("auto" | "brute_force" | "scann"),
scann_min_candidates, scann_target_recall, scann_tuning_queries, retrieval_weight, rating_weight, seed (the
random seed of initialisation and shuffling: a CPU run with the same data, config and seed trains the same model).

Early stopping ends training but keeps the last epoch's weights, so the exported model is the one the
"final" metrics (validation arrays' last epoch) describe.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import shutil
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

try:
    from pipeline.models import export, multitask, ranking, retrieval, scann_tuning, towers
    from pipeline.models import features as F
    from pipeline.models import metrics as M
except ImportError:  # user-module wheel
    import export  # type: ignore[no-redef]
    import features as F  # type: ignore[no-redef]
    import metrics as M  # type: ignore[no-redef]
    import multitask  # type: ignore[no-redef]
    import ranking  # type: ignore[no-redef]
    import retrieval  # type: ignore[no-redef]
    import scann_tuning  # type: ignore[no-redef]
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
    "scann_target_recall": scann_tuning.TARGET_RECALL,
    "scann_tuning_queries": 1000,
    "retrieval_weight": 1.0,
    "rating_weight": 1.0,
    "seed": 42,
}
# The training settings that shape the model (lineage reports them apart from the rest of the config).
HYPERPARAMETERS = ("model_type", "epochs", "batch_size", "embedding_dim", "learning_rate", "optimizer",
                   "early_stopping_patience", "retrieval_weight", "rating_weight", "top_k", "seed")
METRICS_FILE = "training_metrics.json"
BUNDLE_DIR = "serving_bundle"
CANDIDATE_TOWER_DIR = "candidate_tower"
TUNING_QUERIES = "tuning_queries.npy"
# As serving_images/scann_server (bundle.INDEX_DIR, retrieval.INDEX_META): the server loads what the tuning measured.
SCANN_INDEX_DIR = "scann_index"
SCANN_INDEX_META = "registrar_index.json"


def config_from(custom_config) -> dict:
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in (custom_config or {}).items() if v is not None})
    if cfg["model_type"] not in M.MODEL_TYPES:
        raise ValueError(f"unknown model_type {cfg['model_type']!r}")
    return cfg


class NoGpuError(RuntimeError):
    """The run asked for GPUs and TensorFlow sees fewer: training never falls back to the CPU."""


def distribution_strategy(gpu_count: int):
    """MirroredStrategy over the visible GPUs when GPUs were requested; the default strategy otherwise. A run that
    asks for GPUs and sees fewer fails (a silent CPU fallback costs hours and the GPUs' price)."""
    if not gpu_count:
        return tf.distribute.get_strategy(), "default"
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) < int(gpu_count):
        raise NoGpuError(
            f"{int(gpu_count)} GPU(s) requested (gpu_count={int(gpu_count)}) but TensorFlow sees {len(gpus)} "
            f"(CUDA build: {tf.test.is_built_with_cuda()}); refusing to train on the CPU. Run the trainer from the "
            "CUDA image (pipeline/Dockerfile.gpu) on a machine with that many GPUs, or set gpu_count to 0.")
    return tf.distribute.MirroredStrategy(), "mirrored"


def make_reproducible(seed: int, gpu_count: int) -> bool:
    """Seeds Python, NumPy and TensorFlow. On the CPU, TensorFlow's ops are also made deterministic, so a rerun with
    the same data, config and seed trains the same weights; GPU kernels are left as they are (some have no
    deterministic implementation and would fail the run). Returns whether ops are deterministic."""
    tf.keras.utils.set_random_seed(int(seed))
    if gpu_count:
        return False
    tf.config.experimental.enable_op_determinism()
    return True


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
    """What the export does for candidate search: None (ranking: no bundle), "brute_force" (no ScaNN), or "tune"
    (measure ScaNN on the trained embeddings; ``scann_tuning`` decides). ``auto`` tunes from
    ``scann_min_candidates`` candidates on (the ScaNN server's own floor); ``scann`` always tunes."""
    algo = cfg["retrieval_algorithm"]
    if cfg["model_type"] == "ranking":
        return None
    if algo not in ("auto", "brute_force", "scann"):
        raise ValueError(f"unknown retrieval_algorithm {algo!r}")
    if algo == "brute_force" or (algo == "auto" and num_candidates < int(cfg["scann_min_candidates"])):
        return "brute_force"
    return "tune"


def scann_params(num_candidates: int, k: int) -> dict:
    """The old rule of thumb (sqrt(N) leaves, 10 % searched); only for bundles that were never tuned."""
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


def popularity(train_ds, vocab_size: int):
    """Interactions and rating sums per product vocabulary index on the training split (index ``vocab_size``
    is the OOV bucket)."""
    counts = np.zeros(vocab_size + F.NUM_OOV_BUCKETS, np.float64)
    sums = np.zeros_like(counts)
    for batch in train_ds.as_numpy_iterator():
        pid = np.reshape(batch[F.xf(F.PRODUCT_ID)], [-1]).astype(np.int64)
        rating = np.reshape(batch[F.xf(F.LABEL)], [-1]).astype(np.float64)
        np.add.at(counts, pid, 1.0)
        np.add.at(sums, pid, rating)
    return export.Popularity(counts, sums)


def held_out_queries(model, datasets, limit: int) -> np.ndarray:
    """Query embeddings of held-out interactions (of the first dataset that is not None), at most ``limit``."""
    rows, seen = [], 0
    dataset = next((ds for ds in datasets if ds is not None), None)
    if dataset is None:
        return np.zeros((0, 0), np.float32)
    for batch in dataset:
        rows.append(model.query_tower(batch).numpy())
        seen += len(rows[-1])
        if seen >= limit:
            break
    return np.concatenate(rows)[:limit].astype(np.float32)


def library_versions() -> dict:
    import platform
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for name in ("tfx", "tensorflow", "tensorflow-transform", "tensorflow-model-analysis",
                 "tensorflow-recommenders", "apache-beam", "scann"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _write_npy(path: str, array: np.ndarray) -> str:
    """Writes ``array`` and returns the SHA-256 of the file's bytes (what the ScaNN server fingerprints)."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    data = buffer.getvalue()
    with tf.io.gfile.GFile(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def write_scann_index(bundle_dir: str, tuning, candidates_sha256: str, embedding_dim: int) -> None:
    """The searcher the tuning measured, serialized as ``python -m scann_server.build_index`` writes it."""
    local = tempfile.mkdtemp(prefix="scann-index-")
    try:
        tuning.searcher.serialize(local)
        with open(os.path.join(local, SCANN_INDEX_META), "w") as fh:
            json.dump({"candidates_sha256": candidates_sha256, "num_candidates": tuning.num_candidates,
                       "embedding_dim": embedding_dim, "scann": tuning.params}, fh, indent=2)
        target = os.path.join(bundle_dir, SCANN_INDEX_DIR)
        tf.io.gfile.makedirs(target)
        for name in os.listdir(local):
            tf.io.gfile.copy(os.path.join(local, name), os.path.join(target, name), overwrite=True)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def write_bundle(bundle_dir, model, tf_transform_output, candidate_embeddings, product_ids, k, cfg, tuning,
                 queries) -> str:
    """query_tower/, candidates.npy, product_ids.json, tuning_queries.npy, serving_config.json and, when ScaNN
    was chosen, the tuned scann_index/. Returns the algorithm the bundle serves with."""
    tf.io.gfile.makedirs(bundle_dir)
    export.save(export.QueryTowerModel(model, tf_transform_output), os.path.join(bundle_dir, "query_tower"))
    candidates_sha256 = _write_npy(os.path.join(bundle_dir, "candidates.npy"), candidate_embeddings)
    if len(queries):
        _write_npy(os.path.join(bundle_dir, TUNING_QUERIES), queries)
    with tf.io.gfile.GFile(os.path.join(bundle_dir, "product_ids.json"), "w") as fh:
        fh.write(json.dumps(product_ids))
    algorithm = tuning.algorithm if tuning is not None else "brute_force"
    if algorithm == "scann":
        write_scann_index(bundle_dir, tuning, candidates_sha256, int(candidate_embeddings.shape[1]))
    with tf.io.gfile.GFile(os.path.join(bundle_dir, "serving_config.json"), "w") as fh:
        fh.write(json.dumps({
            "retrieval_algorithm": algorithm,
            "scann": tuning.params if tuning is not None and tuning.params else scann_params(len(product_ids), k),
            "scann_tuning": tuning.summary() if tuning is not None else None,
            "embedding_dim": int(candidate_embeddings.shape[1]),
            "num_candidates": len(product_ids),
            "top_k": k,
            "model_type": cfg["model_type"],
            "query_tower": {"inputs": list(export.CUSTOMER_INPUTS), "output": "query_embedding"},
        }, indent=2))
    return algorithm


def train_and_export(train_ds, eval_ds, test_ds, tf_transform_output, custom_config, serving_model_dir,
                     bundle_dir, metrics_path, candidate_sources=None) -> dict:
    """Train, evaluate, export; returns the metrics dict that was written to ``metrics_path``."""
    cfg = config_from(custom_config)
    strategy, strategy_name = distribution_strategy(int(cfg["gpu_count"]))
    deterministic = make_reproducible(int(cfg["seed"]), int(cfg["gpu_count"]))
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
    candidate_index = candidates[F.xf(F.PRODUCT_ID)]
    # Map vocabulary indices to the ORIGINAL product ids: serving must never return indices.
    product_ids = [product_vocab[i] for i in candidate_index]
    k = min(int(cfg["top_k"]), num_candidates)
    popular = popularity(train_ds, len(product_vocab))
    served = export.serving_export(
        model, cfg["model_type"], tf_transform_output, candidate_embeddings, product_ids, k, popular,
        candidate_index, export.unknown_product_embedding(model, export.RawFeatures(tf_transform_output)))
    export.save(served, serving_model_dir, served.signatures())
    run_dir = os.path.dirname(metrics_path)
    export.save(export.CandidateTowerModel(model), os.path.join(run_dir, CANDIDATE_TOWER_DIR))

    plan = choose_algorithm(cfg, num_candidates)
    algorithm, tuning = None, None
    if plan is not None and bundle_dir:
        queries = held_out_queries(model, [test_ds, eval_ds], int(cfg["scann_tuning_queries"]))
        if plan == "tune" and len(queries):
            tuning = scann_tuning.tune(candidate_embeddings, queries, k,
                                       target_recall=float(cfg["scann_target_recall"]),
                                       prefer_scann=cfg["retrieval_algorithm"] == "scann")
            logging.info("ScaNN tuning: %s", tuning.reason)
        algorithm = write_bundle(bundle_dir, model, tf_transform_output, candidate_embeddings, product_ids, k, cfg,
                                 tuning, queries)
    result["info"] = {
        "retrieval_algorithm": algorithm,
        "scann_tuning": tuning.summary() if tuning is not None else None,
        "num_candidates": num_candidates,
        "distribution_strategy": strategy_name,
        "replicas": int(strategy.num_replicas_in_sync),
        "deterministic_ops": deterministic,
        "config": {key: cfg[key] for key in sorted(cfg)},
        "hyperparameters": {key: cfg[key] for key in HYPERPARAMETERS if key in cfg},
        "versions": library_versions(),
        "popularity": popular.summary(product_vocab, np.arange(len(product_vocab))),
        "test_split": "test" if test_ds is not None else "eval (no test split found)",
    }
    tf.io.gfile.makedirs(run_dir)
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
            files, tfxio.TensorFlowDatasetOptions(batch_size=int(cfg["batch_size"]), num_epochs=1, shuffle=shuffle,
                                           shuffle_seed=int(cfg["seed"]) if shuffle else None),
            schema)

    test_files = _test_files(fn_args.train_files)
    train_ds = dataset(fn_args.train_files, True)
    eval_ds = dataset(fn_args.eval_files, False)
    test_ds = dataset(test_files, False) if test_files else None
    bundle_dir = os.path.join(os.path.dirname(fn_args.serving_model_dir.rstrip("/")), BUNDLE_DIR)
    metrics_path = os.path.join(fn_args.model_run_dir, METRICS_FILE)
    train_and_export(train_ds, eval_ds, test_ds, tf_transform_output, cfg, fn_args.serving_model_dir,
                     bundle_dir, metrics_path)
