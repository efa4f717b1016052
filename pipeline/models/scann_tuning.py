"""ScaNN settings measured on the trained embeddings instead of a rule of thumb.

Held-out query embeddings are searched exactly (the serving path: matmul + ``argpartition``) and with ScaNN
(tree + asymmetric hashing + exact reordering, dot product) over a grid of partitionings (``num_leaves``), hashing
granularities (``dimensions_per_block``), leaves to search and reordering depths. recall@k is the overlap of
ScaNN's top-k with the exact top-k. The fastest configuration whose recall@k reaches the target wins; the searcher
it was measured on is what the bundle serves (``serialize``), so the measured recall is the served recall.

Both paths are timed with the same number of threads (``threads``: BLAS is limited with threadpoolctl, ScaNN
searches with ``search_batched`` on one thread or ``search_batched_parallel`` on more); each timing is the best
of ``repeats`` runs over all queries.
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

TARGET_RECALL = 0.95
LEAF_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
REORDER_MULTIPLES = (1, 2, 4, 8, 16, 32)
# Two dimensions per block is ScaNN's usual setting; one is finer (twice the codes, slower to score) and tells
# near-duplicate candidates apart, which large catalogues of product variants are full of.
DIMENSIONS_PER_BLOCK = (2, 1)
AH_THRESHOLD = 0.2
MAX_TRAINING_SAMPLE = 250_000
_EXACT_ROWS = 32  # queries per matmul block, as the ScaNN server's brute-force path


@contextlib.contextmanager
def blas_threads(threads: int):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads, user_api="blas"):
        yield


def exact_top_k(candidates: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices [B, k] of the k largest dot products, descending: matmul per block of rows + ``argpartition``."""
    n = candidates.shape[0]
    k = min(k, n)
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), _EXACT_ROWS):
        scores = queries[start:start + _EXACT_ROWS] @ candidates.T
        top = np.argpartition(scores, n - k, axis=1)[:, n - k:] if k < n else np.tile(np.arange(n), (len(scores), 1))
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[start:start + len(scores)] = np.take_along_axis(top, order, axis=1)
    return out


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean fraction of each query's exact top-k that the approximate top-k contains."""
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) for a, e in zip(approx, exact)]
    return float(np.mean(hits) / min(k, exact.shape[1]))


def leaf_options(n: int) -> list[int]:
    """Partitionings around sqrt(n) leaves; each leaf keeps at least a few points."""
    root = math.sqrt(n)
    options = {max(2, int(round(root * f))) for f in (0.5, 1.0, 2.0)}
    return sorted(v for v in options if v <= max(2, n // 4))


def search_options(num_leaves: int, k: int, n: int) -> tuple[list[int], list[int]]:
    leaves = sorted({max(1, min(num_leaves, math.ceil(f * num_leaves))) for f in LEAF_FRACTIONS})
    reorder = sorted({min(n, m * k) for m in REORDER_MULTIPLES})
    return leaves, reorder


def build_searcher(candidates: np.ndarray, k: int, num_leaves: int, leaves_to_search: int, reorder: int,
                   training_sample_size: int, dimensions_per_block: int = DIMENSIONS_PER_BLOCK[0]):
    """The index as the ScaNN server builds it (serving_images/scann_server/retrieval.py ``ScannIndex.build``)."""
    from scann.scann_ops.py import scann_ops_pybind

    data = np.ascontiguousarray(candidates, dtype=np.float32)
    return (scann_ops_pybind.builder(data, int(k), "dot_product")
            .tree(num_leaves=int(num_leaves), num_leaves_to_search=int(leaves_to_search),
                  training_sample_size=int(training_sample_size))
            .score_ah(int(dimensions_per_block), anisotropic_quantization_threshold=AH_THRESHOLD)
            .reorder(int(reorder))
            .set_n_training_threads(os.cpu_count() or 1)
            .build())


def search(searcher, queries: np.ndarray, k: int, leaves_to_search: int, reorder: int, threads: int) -> np.ndarray:
    if threads > 1:
        searcher.set_num_threads(threads)
        idx, _ = searcher.search_batched_parallel(queries, final_num_neighbors=k, pre_reorder_num_neighbors=reorder,
                                                  leaves_to_search=leaves_to_search)
    else:
        idx, _ = searcher.search_batched(queries, final_num_neighbors=k, pre_reorder_num_neighbors=reorder,
                                         leaves_to_search=leaves_to_search)
    return np.asarray(idx, np.int64)


def _best_time(fn, repeats: int):
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


@dataclass
class Tuning:
    """The outcome; ``searcher`` is the chosen index (None when brute force is chosen)."""

    algorithm: str
    reason: str
    k: int
    num_candidates: int
    num_queries: int
    target_recall: float
    threads: int
    brute_force_ms_per_query: float
    params: dict | None = None
    recall: float | None = None
    scann_ms_per_query: float | None = None
    tried: list = field(default_factory=list)
    searcher: object = None

    @property
    def speedup(self) -> float | None:
        if not self.scann_ms_per_query:
            return None
        return self.brute_force_ms_per_query / self.scann_ms_per_query

    def summary(self) -> dict:
        """JSON for serving_config.json, the metrics file and the run event."""
        return {
            "algorithm": self.algorithm, "reason": self.reason, "k": self.k, "target_recall": self.target_recall,
            "recall_at_k": None if self.recall is None else round(self.recall, 4),
            "speedup": None if self.speedup is None else round(self.speedup, 3),
            "brute_force_ms_per_query": round(self.brute_force_ms_per_query, 4),
            "scann_ms_per_query": None if self.scann_ms_per_query is None else round(self.scann_ms_per_query, 4),
            "num_candidates": self.num_candidates, "num_queries": self.num_queries, "threads": self.threads,
            "params": self.params, "configurations_tried": len(self.tried),
        }


def tune(candidates: np.ndarray, queries: np.ndarray, k: int, *, target_recall: float = TARGET_RECALL,
         prefer_scann: bool = False, threads: int = 1, repeats: int = 3, leaves=None) -> Tuning:
    """Measures ScaNN configurations against exact search on ``queries`` and returns the choice.

    ``prefer_scann`` (the run asked for ScaNN): the fastest configuration that reaches the target is chosen even
    if brute force is faster; otherwise ScaNN is chosen only when it is faster. No configuration reaching the
    target means brute force, whatever was asked, with the reason."""
    candidates = np.ascontiguousarray(candidates, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n = candidates.shape[0]
    k = min(int(k), n)
    with blas_threads(threads):
        exact_seconds, exact = _best_time(lambda: exact_top_k(candidates, queries, k), repeats)
        result = Tuning("brute_force", "", k, n, len(queries), target_recall, threads,
                        exact_seconds / len(queries) * 1000)
        best = None
        for num_leaves in leaves or leaf_options(n):
            leaf_counts, reorders = search_options(num_leaves, k, n)
            for dims in DIMENSIONS_PER_BLOCK:
                searcher = build_searcher(candidates, k, num_leaves, leaf_counts[-1], reorders[-1],
                                          min(n, MAX_TRAINING_SAMPLE), dims)
                for reorder in reorders:
                    for leaves_to_search in leaf_counts:  # recall and time grow with leaves: stop at the first pass
                        def run(s=searcher, lts=leaves_to_search, r=reorder):
                            return search(s, queries, k, lts, r, threads)

                        seconds, approx = _best_time(run, repeats)
                        recall = recall_at_k(approx, exact, k)
                        trial = {"num_leaves": num_leaves, "dimensions_per_block": dims,
                                 "num_leaves_to_search": leaves_to_search, "reordering_num_neighbors": reorder,
                                 "recall_at_k": round(recall, 4),
                                 "ms_per_query": round(seconds / len(queries) * 1000, 4)}
                        result.tried.append(trial)
                        if recall >= target_recall:
                            if best is None or seconds < best[0]:
                                best = (seconds, recall, trial, searcher)
                            break
    if best is None:
        top = max(result.tried, key=lambda t: t["recall_at_k"], default=None)
        result.reason = (f"no ScaNN configuration reached recall@{k} >= {target_recall} against exact search "
                         f"(best {top['recall_at_k'] if top else 'n/a'} of {len(result.tried)} tried): brute force")
        return result
    seconds, recall, trial, searcher = best
    params = {"distance_measure": "dot_product", "num_neighbors": k, "num_leaves": trial["num_leaves"],
              "num_leaves_to_search": trial["num_leaves_to_search"],
              "training_sample_size": min(n, MAX_TRAINING_SAMPLE), "dimensions_per_block": trial["dimensions_per_block"],
              "anisotropic_quantization_threshold": AH_THRESHOLD,
              "reordering_num_neighbors": trial["reordering_num_neighbors"]}
    result.params, result.recall = params, recall
    result.scann_ms_per_query = seconds / len(queries) * 1000
    faster = result.speedup > 1.0
    if faster or prefer_scann:
        result.algorithm, result.searcher = "scann", searcher
        result.reason = (f"fastest configuration with recall@{k} >= {target_recall}: {result.speedup:.2f}x brute "
                         f"force" + ("" if faster else " (slower than brute force; ScaNN was asked for)"))
    else:
        result.reason = (f"the fastest ScaNN configuration with recall@{k} >= {target_recall} is "
                         f"{1 / result.speedup:.2f}x slower than brute force at {n} candidates: brute force")
    return result
