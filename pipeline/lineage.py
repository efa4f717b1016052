"""What made a model version: the examples it was trained and evaluated on (rows per split and a content
fingerprint), its training config and hyperparameters, the library versions, the input and the pipeline job.

The fingerprint is independent of how ExampleGen sharded and ordered its output: every example is re-serialized
canonically (``deterministic=True`` orders the feature map), hashed with SHA-256, and the digests of a split are
summed modulo 2**256; the fingerprint is the SHA-256 of the splits' names, row counts and sums. The same rows give
the same fingerprint whichever files they landed in, and any changed, added or removed row changes it.
"""
from __future__ import annotations

import hashlib
import os

_MOD = 1 << 256


def split_digest(records) -> tuple[int, int]:
    """(rows, order-independent digest) of serialized ``tf.Example`` records."""
    import tensorflow as tf

    rows, total = 0, 0
    for record in records:
        example = tf.train.Example.FromString(record)
        digest = hashlib.sha256(example.SerializeToString(deterministic=True)).digest()
        total = (total + int.from_bytes(digest, "big")) % _MOD
        rows += 1
    return rows, total


def fingerprint(splits: dict[str, tuple[int, int]]) -> str:
    text = ";".join(f"{name}:{rows}:{digest:064x}" for name, (rows, digest) in sorted(splits.items()))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _records(pattern: str):
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        return
    compression = "GZIP" if files[0].endswith(".gz") else ""
    for record in tf.data.TFRecordDataset(files, compression_type=compression):
        yield record.numpy()


def examples_lineage(examples_uri: str, split_names: list[str]) -> dict:
    """Rows per split and the fingerprint of ExampleGen's output at ``examples_uri`` (``Split-<name>/``)."""
    digests = {name: split_digest(_records(os.path.join(examples_uri, f"Split-{name}", "*"))) for name in split_names}
    return {"examples_uri": examples_uri, "rows": {name: rows for name, (rows, _) in digests.items()},
            "fingerprint": fingerprint(digests)}


def training_lineage(metrics: dict) -> dict:
    """The config, hyperparameters and library versions the Trainer recorded in training_metrics.json."""
    info = metrics.get("info") or {}
    return {"training_config": info.get("config"), "hyperparameters": info.get("hyperparameters"),
            "versions": info.get("versions")}


def file_input(data_root: str) -> dict:
    """The CSV files a local run read."""
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(data_root) for name in names)
    return {"kind": "files", "uris": [f"file://{os.path.abspath(f)}" for f in files]}


def query_input(query: str) -> dict:
    return {"kind": "bigquery", "query": query}
