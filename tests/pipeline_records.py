"""What a real pipeline run's PipelineRunEvent records beyond its state (schemas/events/pipeline-run-event.v1.json):
the Evaluator's verdict against a baseline version, the lineage and the ScaNN settings, shaped as pipeline/events.py
writes them. Shared by the registry's tests of runs, versions, the API and the CLI."""

from __future__ import annotations

import copy

EVALUATION = {
    "blessed": False, "evaluator": "tfma", "split": "test", "tfma_validation_ok": False,
    "reason": ("value recall_at_100=0.3000 >= 0.0500 passed (margin +0.2500); change recall_at_100=0.3000 >= "
               "0.4000 failed (margin -0.1000); popularity recall_at_100=0.3000 > 0.2000 passed (margin +0.1000)"),
    "baseline": {"version": "7", "model_uri": "gs://b/models/recs/pushed_model/1/", "used": True,
                 "skipped_reason": None},
    "thresholds": [
        {"metric": "recall_at_100", "kind": "value", "comparator": ">=", "threshold": 0.05, "achieved": 0.3,
         "margin": 0.25, "passed": True, "skipped": None},
        {"metric": "recall_at_100", "kind": "change", "comparator": ">=", "threshold": 0.4, "achieved": 0.3,
         "margin": -0.1, "passed": False, "skipped": None, "baseline_value": 0.4, "tolerance": 0.0},
        {"metric": "recall_at_100", "kind": "popularity", "comparator": ">", "threshold": 0.2, "achieved": 0.3,
         "margin": 0.1, "passed": True, "skipped": None, "baseline_value": 0.2}],
    "metrics": {"model": {"recall_at_100": 0.3}, "baseline_model": {"recall_at_100": 0.4},
                "popularity": {"recall_at_100": 0.2}},
}
LINEAGE = {
    "input": {"kind": "bigquery", "query": "SELECT * FROM `p.d.interactions`"},
    "data": {"examples_uri": "gs://b/root/BigQueryExampleGen/examples/1",
             "rows": {"train": 80, "eval": 10, "test": 10}, "fingerprint": "sha256:" + "a" * 64},
    "training_config": {"epochs": 3, "gpu_count": 0, "embedding_dim": 32},
    "hyperparameters": {"epochs": 3, "embedding_dim": 32, "learning_rate": 0.01},
    "versions": {"tfx": "1.16.0", "tensorflow": "2.16.2"},
    "pipeline_job": {"name": "projects/p/locations/europe-west4/pipelineJobs/run-1", "pipeline_root": "gs://b/root"},
}
SCANN = {"algorithm": "scann", "reason": "fastest configuration with recall@100 >= 0.95: 3.10x brute force", "k": 100,
         "target_recall": 0.95, "recall_at_k": 0.961, "speedup": 3.1, "brute_force_ms_per_query": 1.2,
         "scann_ms_per_query": 0.39, "num_candidates": 50000, "num_queries": 1000, "threads": 1,
         "params": {"num_leaves": 224, "num_leaves_to_search": 22}, "configurations_tried": 40}


def records() -> dict:
    """The three records, as an event carries them (a fresh copy)."""
    return copy.deepcopy({"evaluation": EVALUATION, "lineage": LINEAGE, "scann": SCANN})
