"""The keys a training run's config may set: what every pipeline runner accepts. The one place for that rule.

The local runner takes them as options (`adapters/pipelines.LOCAL_RUNNER_OPTIONS`), the compiled Vertex template as
runtime parameters (`pipeline/runners/vertex.RUNTIME_PARAMETERS`); tests/unit/test_run_control.py checks both lists
against these. The run's own identity (`RUN_SCOPED`) and its baseline (`RUN_RESOLVED`, resolved for each run when
it is first submitted) come from the run, never from a config.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

RUN_SCOPED = ("training_run_id", "model_name", "model_version")
RUN_RESOLVED = ("baseline_model_uri", "baseline_version")
CONFIG_KEYS = frozenset({
    "model_type", "retrieval_algorithm",
    # data
    "interactions", "data_root", "bigquery_query", "seed",
    # training
    "epochs", "batch_size", "embedding_dim", "learning_rate", "early_stopping_patience",
    # the Evaluator's thresholds
    "recall_threshold", "rmse_threshold", "recall_change_tolerance", "rmse_change_tolerance",
    # machines
    "machine_type", "gpu_type", "gpu_count", "training_region", "dataflow",
})


class UnknownConfigKey(ValueError):
    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def check_override_keys(overrides: Mapping[str, Any]) -> None:
    """Raise UnknownConfigKey naming the first key of `overrides` no runner accepts."""
    for key in sorted(overrides):
        if key in RUN_SCOPED or key in RUN_RESOLVED:
            raise UnknownConfigKey(key, f"{key!r} is set by the registry for each run, not by its training config")
        if key not in CONFIG_KEYS:
            raise UnknownConfigKey(key, f"{key!r} is not a training config key the pipeline runners accept "
                                        f"(one of: {', '.join(sorted(CONFIG_KEYS))})")


def merged_config(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` over it; a null override removes the key (back to the runner's default)."""
    check_override_keys(overrides)
    config = {k: v for k, v in base.items() if k not in RUN_SCOPED and k not in RUN_RESOLVED}
    for key, value in overrides.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config
