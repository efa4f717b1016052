"""Pipeline benchmark (not a test): the local pipeline's wall time, and ScaNN as the export tuned it next to brute
force, on the trained embeddings, at the catalogue's size and at 1,000,000 candidates.

    .venv-pipeline/bin/python bench/pipeline_bench.py --interactions 100000 [--million 1000000]

1. Runs ``python -m pipeline.runners.local`` (retrieval, ``--retrieval-algorithm scann`` so the export tunes
   ScaNN even below its 10,000-candidate floor) and times it, stage by stage.
2. Catalogue: the bundle's candidate embeddings and the held-out query embeddings the export tuned on
   (``tuning_queries.npy``). Brute force is the serving path (matmul + ``argpartition``, pipeline/models/
   scann_tuning.py ``exact_top_k``); ScaNN is the serialized index the export chose. Both are timed with the same
   threads: one (BLAS limited with threadpoolctl, ScaNN ``search_batched``), then all cores (BLAS unlimited,
   ScaNN ``search_batched_parallel``). recall@100 is the overlap with the exact top-100; the interaction recall
   is the share of held-out interactions whose product is in the top 100 (brute force vs ScaNN).
3. 1,000,000 candidates embedded by the trained candidate tower (``<model_run>/candidate_tower``): each is a
   variant of a trained product (its trained id embedding, a category drawn from the trained categories, a
   z-scored price drawn from N(0, 1)); queries: the same held-out query embeddings. The export's tuning
   (``scann_tuning.tune``) runs on them and is reported next to brute force, as in 2.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "serving_images"))
K = 100


def run_pipeline(args, output):
    cmd = [sys.executable, "-m", "pipeline.runners.local", "--model-type", "retrieval",
           "--interactions", str(args.interactions), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--output", output, "--plain", "--retrieval-algorithm", "scann",
           "--training-run-id", f"bench-{args.interactions}", "--model-name", "bench"]
    env = dict(os.environ, PYTHONPATH=REPO)
    env.pop("PUBSUB_EMULATOR_HOST", None)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"pipeline failed (exit {proc.returncode})")
    stages = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    return elapsed, stages


def held_out(output, bundle, limit):
    """(query embeddings, interacted product ids) of the held-out (test) interactions, through the bundle's query
    tower from the raw examples ExampleGen wrote."""
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(output, "pipeline_root", "CsvExampleGen", "examples", "*", "Split-test",
                                          "*")))

    def value(feature):
        # CsvExampleGen infers types: numeric-looking ids arrive as int64, so read whichever list is set.
        if feature.bytes_list.value:
            return feature.bytes_list.value[0].decode()
        if feature.int64_list.value:
            return str(feature.int64_list.value[0])
        return feature.float_list.value[0]

    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
        ex = tf.train.Example.FromString(record.numpy()).features.feature
        rows.append({k: value(ex[k]) for k in ("customer_id", "city", "segment", "revenue", "product_id")})
    tower = tf.saved_model.load(os.path.join(bundle, "query_tower")).signatures["serving_default"]
    queries = tower(customer_id=tf.constant([r["customer_id"] for r in rows]),
                    city=tf.constant([r["city"] for r in rows]), segment=tf.constant([r["segment"] for r in rows]),
                    revenue=tf.constant([float(r["revenue"]) for r in rows], tf.float32))["query_embedding"].numpy()
    return queries, [r["product_id"] for r in rows]


def timed(fn, repeats=3):
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def compare(candidates, queries, searcher, params, threads):
    """(brute ms/query, ScaNN ms/query, exact indices, ScaNN indices) with ``threads`` for both."""
    from pipeline.models import scann_tuning

    with scann_tuning.blas_threads(threads):
        brute_s, exact = timed(lambda: scann_tuning.exact_top_k(candidates, queries, K))
        scann_s, approx = timed(lambda: scann_tuning.search(searcher, queries, K, params["num_leaves_to_search"],
                                                 params["reordering_num_neighbors"], threads))
    return brute_s / len(queries) * 1000, scann_s / len(queries) * 1000, exact, approx


def report(title, candidates, queries, searcher, params, tuning_summary, interactions=None, ids=None):
    from pipeline.models import scann_tuning

    cores = os.cpu_count() or 1
    print(f"\n{title}: {candidates.shape[0]:,} x {candidates.shape[1]} candidates, {len(queries):,} held-out "
          f"queries, top-{K}")
    if tuning_summary:
        print(f"  tuning: {tuning_summary['reason']}")
        print(f"  chosen: {json.dumps({k: params[k] for k in ('num_leaves', 'num_leaves_to_search', 'reordering_num_neighbors', 'dimensions_per_block')})}"
              f"; tuned recall@{K} {tuning_summary['recall_at_k']}, speed-up {tuning_summary['speedup']}x "
              f"({tuning_summary['configurations_tried']} configurations tried)")
    print(f"  {'threads':<10}{'brute force ms/q':>18}{'ScaNN ms/q':>14}{'speed-up':>10}{'recall@100 vs exact':>22}")
    for threads in sorted({1, cores}):
        brute_ms, scann_ms, exact, approx = compare(candidates, queries, searcher, params, threads)
        print(f"  {threads:<10}{brute_ms:>18.4f}{scann_ms:>14.4f}{brute_ms / scann_ms:>9.1f}x"
              f"{scann_tuning.recall_at_k(approx, exact, K):>22.4f}")
    if interactions is not None:
        interaction_queries, truth = interactions
        _, _, exact, approx = compare(candidates, interaction_queries, searcher, params, 1)

        def hits(rows):
            return sum(t in {ids[j] for j in row} for t, row in zip(truth, rows.tolist())) / len(truth)

        print(f"  held-out interactions whose product is in the top {K} ({len(truth):,}): brute force "
              f"{hits(exact):.4f}, ScaNN {hits(approx):.4f}")


def million_candidates(run_dir, transform_dir, n, seed):
    """``n`` variants of trained products embedded by the trained candidate tower."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_transform as tft

    vocab = tft.TFTransformOutput(transform_dir)
    products, categories = vocab.vocabulary_size_by_name("product_id"), vocab.vocabulary_size_by_name("category")
    tower = tf.saved_model.load(os.path.join(run_dir, "candidate_tower")).signatures["serving_default"]
    rng = np.random.default_rng(seed)
    chunks = []
    for start in range(0, n, 100_000):
        rows = min(100_000, n - start)
        chunks.append(tower(product_id_xf=tf.constant(rng.integers(0, products, rows), tf.int64),
                            category_xf=tf.constant(rng.integers(0, categories, rows), tf.int64),
                            price_xf=tf.constant(rng.normal(size=rows), tf.float32))["candidate_embedding"].numpy())
    out = np.ascontiguousarray(np.concatenate(chunks), dtype=np.float32)
    return out, products, categories


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interactions", type=int, default=100_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--million", type=int, default=1_000_000, help="candidates of the large run (0: skip it)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output", help="run directory (default: a new temporary directory)")
    p.add_argument("--reuse", action="store_true", help="use the run already in --output instead of training")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    output = args.output or tempfile.mkdtemp(prefix="pipeline-bench-")

    wall, stages = (None, []) if args.reuse else run_pipeline(args, output)
    event = json.load(open(os.path.join(output, "pipeline_run_event.json")))
    bundle = event["artifacts"]["serving_bundle_uri"]

    import numpy as np
    from scann_server.retrieval import ScannIndex, fingerprint

    from pipeline.models import scann_tuning

    config = json.load(open(os.path.join(bundle, "serving_config.json")))
    candidates = np.load(os.path.join(bundle, "candidates.npy"))
    queries = np.load(os.path.join(bundle, "tuning_queries.npy"))
    ids = json.load(open(os.path.join(bundle, "product_ids.json")))
    interactions = held_out(output, bundle, 5000)

    print(f"\nRegistrar pipeline benchmark ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"retrieval, {args.interactions:,} interactions, epochs={args.epochs}, batch={args.batch_size})")
    if wall is not None:
        print(f"local pipeline wall time: {wall:.1f} s; stages: " + "; ".join(stages))
    evaluation = event.get("evaluation") or {}
    if evaluation:
        print(f"evaluation (TFMA, test split): {evaluation['reason']}")
    tuning = config.get("scann_tuning") or {}
    if config["retrieval_algorithm"] == "scann":
        index = ScannIndex.load(os.path.join(bundle, "scann_index"), candidates,
                                fingerprint(os.path.join(bundle, "candidates.npy")))
        report("catalogue (the exported bundle, its serialized index)", candidates, queries, index.searcher,
               config["scann"], tuning, interactions, ids)
    else:
        print("\ncatalogue: the bundle serves with brute force: "
              + (tuning.get("reason") or "not tuned (retrieval_algorithm brute_force, or auto below "
                                         "scann_min_candidates)"))

    if args.million:
        run_dir = os.path.dirname(event["artifacts"]["metrics_uri"])
        transform_dir = glob.glob(os.path.join(output, "pipeline_root", "Transform", "transform_graph", "*"))[0]
        started = time.perf_counter()
        large, products, categories = million_candidates(run_dir, transform_dir, args.million, args.seed)
        embed_s = time.perf_counter() - started
        started = time.perf_counter()
        tuned = scann_tuning.tune(large, queries, K)
        tune_s = time.perf_counter() - started
        print(f"\n{args.million:,} candidates from the trained candidate tower ({products:,} trained product ids x "
              f"{categories} categories x N(0, 1) prices) embedded in {embed_s:.1f} s; tuning took {tune_s:.1f} s")
        if tuned.searcher is None:
            print(f"  tuning chose brute force: {tuned.reason}")
        else:
            report(f"{args.million:,} candidates (tuned as the export tunes)", large, queries, tuned.searcher,
                   tuned.params, tuned.summary())
    print(f"\nrun dir: {output}")


if __name__ == "__main__":
    main()
