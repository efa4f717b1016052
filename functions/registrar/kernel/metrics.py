"""Which way is better for a metric: the one table of metric directions, read by ranking (`best_metric_rank`) and
by version comparison. A metric the table does not know has no direction, and no verdict is given for it."""

from __future__ import annotations

import re

HIGHER = "higher_is_better"
LOWER = "lower_is_better"

# (term, direction): a term matches a metric name where it stands between separators (anything but a lowercase
# letter or a digit) or at either end, so `recall` matches `recall_at_100` and `map` does not match `mapping`.
# The first match decides, so the losses and errors come first: `auc_loss` is a loss.
METRIC_DIRECTIONS: tuple[tuple[str, str], ...] = (
    ("loss", LOWER),
    ("error", LOWER),
    ("rmse", LOWER),
    ("rmsle", LOWER),
    ("mse", LOWER),
    ("mae", LOWER),
    ("mape", LOWER),
    ("perplexity", LOWER),
    ("recall", HIGHER),
    ("precision", HIGHER),
    ("ndcg", HIGHER),
    ("auc", HIGHER),
    ("accuracy", HIGHER),
    ("map", HIGHER),
    ("mrr", HIGHER),
    ("f1", HIGHER),
    ("hit_rate", HIGHER),
    (r"top_\d+", HIGHER),  # TF Recommenders' factorized_top_k/top_<k>_categorical_accuracy
)

_PATTERNS = tuple((re.compile(rf"(?:^|[^a-z0-9]){term}(?:$|[^a-z0-9])"), direction)
                  for term, direction in METRIC_DIRECTIONS)


def direction(metric: str) -> str | None:
    """HIGHER, LOWER, or None for a metric the table does not know."""
    name = metric.lower()
    for pattern, way in _PATTERNS:
        if pattern.search(name):
            return way
    return None


def better(metric: str, a: float | None, b: float | None) -> str | None:
    """Which of two values of `metric` is better: "a", "b" or "equal"; None when a value is missing or the metric's
    direction is unknown."""
    way = direction(metric)
    if way is None or a is None or b is None:
        return None
    if a == b:
        return "equal"
    return "b" if (b > a) == (way == HIGHER) else "a"
