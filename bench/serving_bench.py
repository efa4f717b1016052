"""Serving benchmark (not a test): ScaNN vs brute force through the real HTTP server, side by side in one run.

    .venv-pipeline/bin/python bench/serving_bench.py [--candidates 1000000] [--dim 64] [--k 100]

1. Writes a serving bundle to a temp dir: N x D seeded, clustered float32 candidates, 12-character product ids, a
   trivial query tower (customer_id -> a row of a lookup table of query embeddings: the search dominates a
   request) and serving_config.json. The query embeddings are drawn apart from the cluster centres (random
   directions, or with --query-mix M the mean of M random centres; plus noise), so a query's exact top-k spans
   several clusters; the share of it inside the query's nearest cluster is printed (queries drawn near one centre,
   as this benchmark drew them before, put about 96 % there).
2. Tunes ScaNN as the pipeline's export does (pipeline/models/scann_tuning.py: the fastest configuration with
   recall@k >= 0.95 against exact search, on 1,000 other queries drawn the same way) and serializes the chosen
   index into the bundle; ``--untuned`` serializes the untuned rule with ``python -m scann_server.build_index``.
3. For brute force, then ScaNN: starts ``python -m scann_server`` on loopback and measures over HTTP
   - single-query requests, one at a time: p50 / p99 latency,
   - batches of --batch queries from --clients concurrent clients: queries per second,
   and keeps the batch answers: recall@k of ScaNN = overlap of its top-k with the brute-force (exact) top-k.
   Both servers get the same threads: gunicorn's --threads, and --blas-threads BLAS threads per request (the
   brute-force matmul; ScaNN searches one query batch on one thread).
Every loop is bounded by a count and a time budget. Memory: the candidates are written in chunks and memory-mapped.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _common import percentile, table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING_IMAGES = os.path.join(REPO, "serving_images")
MODEL = "bench"
VERSION = "1"


def write_bundle(path: str, n: int, dim: int, k: int, customers: int, clusters: int, noise: float, seed: int,
                 sample: int, query_mix: int, query_noise: float) -> None:
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    os.makedirs(path)
    out = np.lib.format.open_memmap(os.path.join(path, "candidates.npy"), mode="w+", dtype=np.float32,
                                    shape=(n, dim))
    members_of = np.empty(n, np.int32)
    for start in range(0, n, 100_000):
        rows = min(100_000, n - start)
        members = rng.integers(0, clusters, rows)
        members_of[start:start + rows] = members
        out[start:start + rows] = centers[members] + noise / math.sqrt(dim) * rng.normal(size=(rows, dim))
    out.flush()
    del out
    np.save(os.path.join(path, "..", "members.npy"), members_of)  # beside the bundle: for the report only
    with open(os.path.join(path, "product_ids.json"), "w") as fh:
        json.dump([f"P{i:011d}" for i in rng.permutation(n)], fh)
    # Apart from the cluster centres: random unit directions (query_mix 0), or the normalised mean of `query_mix`
    # random centres; plus noise.
    if query_mix:
        mix = np.zeros((customers, clusters), np.float32)
        for row in mix:
            row[rng.choice(clusters, query_mix, replace=False)] = 1.0
        queries = mix @ centers
    else:
        queries = rng.normal(size=(customers, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    queries = (queries + query_noise / math.sqrt(dim) * rng.normal(size=(customers, dim))).astype(np.float32)
    np.save(os.path.join(path, "..", "queries.npy"), queries)
    np.save(os.path.join(path, "..", "centers.npy"), centers)

    class LookupTower(tf.Module):
        def __init__(self):
            super().__init__()
            keys = tf.constant([f"C{i:07d}" for i in range(customers)])
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(keys, tf.range(customers, dtype=tf.int64)), default_value=0)
            self.embeddings = tf.Variable(queries, trainable=False)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="customer_id"),
                                      tf.TensorSpec([None], tf.string, name="city"),
                                      tf.TensorSpec([None], tf.string, name="segment"),
                                      tf.TensorSpec([None], tf.float32, name="revenue")])
        def serve(self, customer_id, city, segment, revenue):
            return {"query_embedding": tf.gather(self.embeddings, self.table.lookup(customer_id))}

    tower = LookupTower()
    tf.saved_model.save(tower, os.path.join(path, "query_tower"), signatures={"serving_default": tower.serve})
    leaves = max(1, int(round(math.sqrt(n))))
    scann = {"distance_measure": "dot_product", "num_neighbors": k, "num_leaves": leaves,
             "num_leaves_to_search": max(1, leaves // 10), "training_sample_size": min(n, sample),
             "dimensions_per_block": 2, "anisotropic_quantization_threshold": 0.2,
             "reordering_num_neighbors": 4 * k}
    with open(os.path.join(path, "serving_config.json"), "w") as fh:
        json.dump({"retrieval_algorithm": "scann", "scann": scann, "embedding_dim": dim, "num_candidates": n,
                   "top_k": k, "model_type": "retrieval",
                   "query_tower": {"inputs": ["customer_id", "city", "segment", "revenue"],
                                   "output": "query_embedding"}}, fh, indent=2)


def env_for(bundle: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_NAME", "MODEL_VERSION", "BUNDLE_PATH")}
    env.update(PYTHONPATH=SERVING_IMAGES, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1", MODEL_NAME=MODEL,
               MODEL_VERSION=VERSION, BUNDLE_PATH=bundle, **extra)
    return env


class Server:
    def __init__(self, bundle: str, algorithm: str, log_dir: str, timeout: float, threads: int, blas_threads: int):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = os.path.join(log_dir, f"server-{algorithm}.log")
        started = time.perf_counter()
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "scann_server", "--host", "127.0.0.1", "--port", str(self.port)],
                env=env_for(bundle, RETRIEVAL_ALGORITHM=algorithm, SCANN_MIN_CANDIDATES="0", THREADS=str(threads),
                            OPENBLAS_NUM_THREADS=str(blas_threads), OMP_NUM_THREADS=str(blas_threads),
                            MKL_NUM_THREADS=str(blas_threads)),
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{algorithm} server exited {self.proc.returncode}; log: {self.log}")
            try:
                status, body = Client(self.port).get("/healthz")
                if status == 200:
                    self.retrieval = body["retrieval"]
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{algorithm} server not ready after {timeout:.0f} s; log: {self.log}")
            time.sleep(0.1)
        self.ready_seconds = time.perf_counter() - started

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str):
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def predict(self, instances: list[dict], k: int) -> list[list[str]]:
        body = json.dumps({"instances": instances, "top_k": k})
        self.conn.request("POST", f"/v1/models/{MODEL}:predict", body, {"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = json.loads(resp.read())
        if resp.status != 200:
            raise RuntimeError(f"predict answered {resp.status}: {data}")
        return [p["product_ids"] for p in data["predictions"]]


def instance(i: int, customers: int) -> dict:
    return {"customer_id": f"C{i % customers:07d}", "city": "Warsaw", "segment": "retail", "revenue": 100.0}


def measure(server: Server, args) -> dict:
    client = Client(server.port)
    for i in range(5):  # warm-up: TF function tracing, first pages of the memory-mapped candidates
        client.predict([instance(i, args.customers)], args.k)
    latencies = []
    deadline = time.monotonic() + args.seconds
    for i in range(args.single):
        started = time.perf_counter()
        client.predict([instance(10_000 + i, args.customers)], args.k)
        latencies.append((time.perf_counter() - started) * 1000)
        if time.monotonic() > deadline:
            break
    batches = [[instance(j, args.customers) for j in range(b * args.batch, (b + 1) * args.batch)]
               for b in range(args.recall_queries // args.batch)]
    answers: dict[int, list[list[str]]] = {}
    local = threading.local()
    deadline = time.monotonic() + args.seconds

    def run(b: int):
        if time.monotonic() > deadline:
            return
        if not hasattr(local, "client"):
            local.client = Client(server.port)
        answers[b] = local.client.predict(batches[b], args.k)

    started = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(run, range(len(batches))))
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "answers": answers, "qps": len(answers) * args.batch / elapsed,
            "batches": len(answers)}


def tune_bundle(bundle: str, args) -> str:
    """Tunes ScaNN as the pipeline's export does (pipeline/models/scann_tuning.py), on tuning queries drawn like the
    measured ones but apart from them, and writes the chosen index and settings into the bundle."""
    import numpy as np

    sys.path[:0] = [REPO, SERVING_IMAGES]
    from scann_server.retrieval import fingerprint

    from pipeline.models import scann_tuning, trainer

    candidates = np.load(os.path.join(bundle, "candidates.npy"))
    measured = np.load(os.path.join(bundle, "..", "queries.npy"))
    rng = np.random.default_rng(args.seed + 1)
    # keep the queries the servers are measured on (the first --recall-queries customers) out of the tuning set
    held = set(range(args.recall_queries))
    pool = [i for i in rng.permutation(len(measured)) if i not in held][:1000]
    tuning_queries = measured[pool]
    tuning = scann_tuning.tune(candidates, tuning_queries, args.k, prefer_scann=True, repeats=2)
    if tuning.searcher is None:
        raise SystemExit(f"tuning found no ScaNN configuration: {tuning.reason}")
    trainer.write_scann_index(bundle, tuning, fingerprint(os.path.join(bundle, "candidates.npy")), args.dim)
    with open(os.path.join(bundle, "serving_config.json")) as fh:
        config = json.load(fh)
    config.update(scann=tuning.params, scann_tuning=tuning.summary())
    with open(os.path.join(bundle, "serving_config.json"), "w") as fh:
        json.dump(config, fh, indent=2)
    summary = tuning.summary()
    return (f"tuned on {len(tuning_queries)} other queries: recall@{args.k} {summary['recall_at_k']}, speed-up "
            f"{summary['speedup']}x at one thread, {json.dumps(tuning.params)}")


def share_in_nearest_cluster(work: str, bundle: str, answers: dict, args) -> float:
    """The share of the exact top-k that sits in the cluster whose centre is nearest the query."""
    import numpy as np

    members = np.load(os.path.join(work, "bench_serving_bundle", "members.npy"), mmap_mode="r")
    queries = np.load(os.path.join(work, "bench_serving_bundle", "queries.npy"))
    centers = np.load(os.path.join(work, "bench_serving_bundle", "centers.npy"))
    with open(os.path.join(bundle, "product_ids.json")) as fh:
        row_of = {pid: row for row, pid in enumerate(json.load(fh))}
    shares = []
    for b, batch in answers.items():
        for j, ids in enumerate(batch):
            query = queries[(b * args.batch + j) % args.customers]
            nearest = int(np.argmax(centers @ query))
            shares.append(np.mean([members[row_of[pid]] == nearest for pid in ids]))
    return float(np.mean(shares)) if shares else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--candidates", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--clusters", type=int, default=10_000, help="clusters the candidates are drawn around")
    p.add_argument("--noise", type=float, default=0.35, help="norm of the noise around the unit cluster centres")
    p.add_argument("--customers", type=int, default=20_000, help="rows of the query tower's lookup table")
    p.add_argument("--single", type=int, default=300, help="single-query requests per algorithm (max)")
    p.add_argument("--batch", type=int, default=32, help="queries per batch request")
    p.add_argument("--clients", type=int, default=2, help="concurrent clients sending batches")
    p.add_argument("--recall-queries", type=int, default=1024, help="queries sent in batches (recall, QPS)")
    p.add_argument("--seconds", type=float, default=60, help="time budget of each measuring loop")
    p.add_argument("--training-sample", type=int, default=250_000, help="ScaNN k-means / AH training sample")
    p.add_argument("--startup-timeout", type=float, default=900)
    p.add_argument("--query-mix", type=int, default=0,
                   help="0: queries are random directions; M: the mean of M random cluster centres")
    p.add_argument("--query-noise", type=float, default=0.1, help="norm of the noise added to each query")
    p.add_argument("--threads", type=int, default=4, help="gunicorn threads of each server")
    p.add_argument("--blas-threads", type=int, default=1, help="BLAS threads per request, both servers")
    p.add_argument("--untuned", action="store_true",
                   help="serve the untuned rule (sqrt(N) leaves, 10 %% searched) instead of tuning as the export does")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = tempfile.mkdtemp(prefix="serving-bench-")
    bundle = os.path.join(work, "bench_serving_bundle", VERSION)
    try:
        started = time.perf_counter()
        write_bundle(bundle, args.candidates, args.dim, args.k, args.customers, args.clusters, args.noise, args.seed,
                     args.training_sample, args.query_mix, args.query_noise)
        bundle_seconds = time.perf_counter() - started
        started = time.perf_counter()
        if args.untuned:
            built = subprocess.run([sys.executable, "-m", "scann_server.build_index", bundle], env=env_for(bundle),
                                   capture_output=True, text=True, timeout=args.startup_timeout)
            if built.returncode != 0:
                raise SystemExit(f"build_index failed ({built.returncode}):\n{built.stderr[-3000:]}")
            index_note = f"the untuned rule: {json.dumps(json.loads(built.stdout)['scann'])}"
        else:
            index_note = tune_bundle(bundle, args)
        index_seconds = time.perf_counter() - started
        results, servers = {}, {}
        for algorithm in ("brute_force", "scann"):
            server = Server(bundle, algorithm, work, args.startup_timeout, args.threads, args.blas_threads)
            try:
                results[algorithm] = measure(server, args)
                servers[algorithm] = server
            finally:
                server.stop()
        exact, approx = results["brute_force"]["answers"], results["scann"]["answers"]
        common = sorted(set(exact) & set(approx))
        overlaps = [len(set(a) & set(e)) / args.k for b in common for a, e in zip(approx[b], exact[b], strict=True)]
        recall = sum(overlaps) / len(overlaps) if overlaps else float("nan")
        own_cluster = share_in_nearest_cluster(work, bundle, exact, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    bf, sc = results["brute_force"], results["scann"]
    ratio = lambda a, b: f"{a / b:.1f}x" if b else "-"  # noqa: E731
    p50 = (percentile(bf["latencies"], 50), percentile(sc["latencies"], 50))
    p99 = (percentile(bf["latencies"], 99), percentile(sc["latencies"], 99))
    rows = [
        ["single-query latency p50 (ms)", p50[0], p50[1], ratio(p50[0], p50[1])],
        ["single-query latency p99 (ms)", p99[0], p99[1], ratio(p99[0], p99[1])],
        ["single-query requests", len(bf["latencies"]), len(sc["latencies"]), ""],
        [f"batch QPS ({args.batch}/request, {args.clients} clients)", bf["qps"], sc["qps"], ratio(sc["qps"], bf["qps"])],
        [f"recall@{args.k} vs exact ({len(overlaps)} queries)", 1.0, recall, ""],
        [f"exact top-{args.k} inside the query's nearest cluster", own_cluster, "", ""],
        ["server start to healthy (s)", servers["brute_force"].ready_seconds, servers["scann"].ready_seconds, ""],
        ["ScaNN index load at start-up (s)", "-", servers["scann"].retrieval.get("load_seconds", "not serialized"), ""],
    ]
    print()
    print(f"Registrar serving benchmark: {args.candidates:,} x {args.dim} candidates ({args.clusters:,} clusters, "
          f"noise {args.noise}), top-{args.k}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"HTTP on loopback (python -m scann_server, gunicorn gthread x{args.threads}, {args.blas_threads} BLAS "
          f"thread(s) per request), queries: "
          + (f"means of {args.query_mix} cluster centres" if args.query_mix else "random directions"))
    print(table(["", "brute force", "ScaNN", "ScaNN speed-up"], rows))
    print(f"bundle written in {bundle_seconds:.1f} s; ScaNN index built + serialized in {index_seconds:.1f} s; "
          f"ScaNN: {index_note}")


if __name__ == "__main__":
    main()
