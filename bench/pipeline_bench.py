"""Pipeline benchmark (not a test): local pipeline wall time, and recall@K brute force vs ScaNN.

    .venv-pipeline/bin/python bench/pipeline_bench.py --interactions 100000

1. Runs ``python -m pipeline.runners.local`` on N synthetic interactions and times it (wall clock).
2. Loads the pushed serving bundle (query tower, candidate embeddings, product ids) and the held-out test split
   written by ExampleGen, and compares, over those test interactions:
     - recall@K of the interacted product: exact brute-force top-K vs a ScaNN index (tree + AH + reorder)
     - ScaNN top-K overlap with the exact top-K (how approximate the index is)
     - per-query latency of both on this machine.
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


def run_pipeline(args, output):
    cmd = [sys.executable, "-m", "pipeline.runners.local", "--model-type", args.model_type,
           "--interactions", str(args.interactions), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--output", output, "--plain",
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


def held_out(output, limit):
    import tensorflow as tf

    files = glob.glob(os.path.join(output, "pipeline_root", "CsvExampleGen", "examples", "*", "Split-test", "*"))
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
        rows.append({
            "customer_id": value(ex["customer_id"]),
            "city": value(ex["city"]),
            "segment": value(ex["segment"]),
            "revenue": float(value(ex["revenue"])),
            "product_id": value(ex["product_id"]),
        })
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--interactions", type=int, default=100_000)
    p.add_argument("--model-type", default="retrieval", choices=["retrieval", "multitask"])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--queries", type=int, default=5000, help="held-out interactions used as queries (max)")
    p.add_argument("--output", help="run directory (default: a new temporary directory)")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    output = args.output or tempfile.mkdtemp(prefix="pipeline-bench-")

    wall, stages = run_pipeline(args, output)
    event = json.load(open(os.path.join(output, "pipeline_run_event.json")))
    bundle = event["artifacts"]["serving_bundle_uri"]

    import numpy as np
    import scann
    import tensorflow as tf

    candidates = np.load(os.path.join(bundle, "candidates.npy"))
    product_ids = json.load(open(os.path.join(bundle, "product_ids.json")))
    config = json.load(open(os.path.join(bundle, "serving_config.json")))
    k = min(args.k, len(product_ids))
    rows = held_out(output, args.queries)
    query_fn = tf.saved_model.load(os.path.join(bundle, "query_tower")).signatures["serving_default"]
    queries = query_fn(customer_id=tf.constant([r["customer_id"] for r in rows]),
                       city=tf.constant([r["city"] for r in rows]), segment=tf.constant([r["segment"] for r in rows]),
                       revenue=tf.constant([r["revenue"] for r in rows], tf.float32))["query_embedding"].numpy()
    truth = [r["product_id"] for r in rows]

    t = time.perf_counter()
    exact = np.argsort(-(queries @ candidates.T), axis=1)[:, :k]
    brute_ms = (time.perf_counter() - t) / len(rows) * 1000

    sp = config["scann"]
    searcher = (scann.scann_ops_pybind.builder(candidates, k, "dot_product")
                .tree(num_leaves=sp["num_leaves"], num_leaves_to_search=sp["num_leaves_to_search"],
                      training_sample_size=len(candidates))
                .score_ah(sp["dimensions_per_block"], anisotropic_quantization_threshold=sp[
                    "anisotropic_quantization_threshold"])
                .reorder(sp["reordering_num_neighbors"]).build())
    t = time.perf_counter()
    approx, _ = searcher.search_batched(queries, final_num_neighbors=k)
    scann_ms = (time.perf_counter() - t) / len(rows) * 1000

    def recall(indices):
        return float(np.mean([truth[i] in {product_ids[j] for j in row} for i, row in enumerate(indices)]))

    overlap = float(np.mean([len(set(a.tolist()) & set(e.tolist())) / k for a, e in zip(approx, exact)]))
    print()
    print(f"Registrar pipeline benchmark ({os.cpu_count()} CPUs, model_type={args.model_type}, "
          f"epochs={args.epochs}, batch={args.batch_size})")
    print(f"{'interactions':<34}{args.interactions:>12}")
    print(f"{'local pipeline wall time (s)':<34}{wall:>12.1f}")
    print(f"{'candidates (products)':<34}{len(product_ids):>12}")
    print(f"{'held-out queries':<34}{len(rows):>12}")
    print(f"{'pipeline recall@100 (val / test)':<34}{event['metrics'].get('recall_at_100', float('nan')):>6.4f}"
          f" / {event['metrics'].get('test_recall_at_100', float('nan')):.4f}")
    print(f"{'':<34}{'brute force':>12}{'ScaNN':>12}")
    print(f"{f'recall@{k} (held-out)':<34}{recall(exact):>12.4f}{recall(approx):>12.4f}")
    print(f"{f'ScaNN overlap with exact top-{k}':<34}{'1.0000':>12}{overlap:>12.4f}")
    print(f"{'ms / query (batched)':<34}{brute_ms:>12.4f}{scann_ms:>12.4f}")
    print(f"ScaNN params: {json.dumps(sp)}")
    print(f"serving_config retrieval_algorithm: {config['retrieval_algorithm']}; run dir: {output}")
    print("stages:", "; ".join(stages))


if __name__ == "__main__":
    main()
