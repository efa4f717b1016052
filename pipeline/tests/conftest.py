"""Shared fixtures: a tiny synthetic dataset analysed by tf.Transform with the pipeline's preprocessing_fn."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

TINY_INTERACTIONS = 1500


def _raw_feature_spec():
    import tensorflow as tf

    spec = {}
    for name in ("customer_id", "city", "segment", "product_id", "category"):
        spec[name] = tf.io.FixedLenFeature([1], tf.string)
    for name in ("revenue", "price"):
        spec[name] = tf.io.FixedLenFeature([1], tf.float32)
    for name in ("rating", "timestamp"):
        spec[name] = tf.io.FixedLenFeature([1], tf.int64)
    return spec


@pytest.fixture(scope="session")
def tiny_data():
    from pipeline.data import synthetic

    return synthetic.generate(TINY_INTERACTIONS, seed=7)


@pytest.fixture(scope="session")
def transformed(tmp_path_factory, tiny_data):
    """(tf_transform_output, transformed rows as a dict of numpy arrays, raw rows)."""
    import numpy as np
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

    from pipeline.models import features

    _, _, rows = tiny_data
    out = str(tmp_path_factory.mktemp("tft"))
    raw = [{k: [v] for k, v in r.items()} for r in rows]
    for r in raw:
        for k in ("customer_id", "city", "segment", "product_id", "category"):
            r[k] = [r[k][0].encode()]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(_raw_feature_spec()))
    with tft_beam.Context(temp_dir=os.path.join(out, "tmp"), force_tf_compat_v1=False):
        (data, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            features.preprocessing_fn, output_record_batches=False)
        _ = transform_fn | tft_beam.WriteTransformFn(out)
    from tensorflow_transform.tf_metadata import metadata_io

    metadata_io.write_metadata(metadata, os.path.join(out, "metadata"))  # raw schema, as TFX Transform does
    cols = {k: np.array([d[k] for d in data]) for k in data[0]}
    return tft.TFTransformOutput(out), cols, rows


def split_datasets(cols, batch_size=128):
    import numpy as np
    import tensorflow as tf

    cols = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in cols.items()}
    n = len(next(iter(cols.values())))
    a, b = int(n * 0.8), int(n * 0.9)

    def ds(lo, hi):
        return tf.data.Dataset.from_tensor_slices({k: v[lo:hi] for k, v in cols.items()}).batch(batch_size)

    return ds(0, a), ds(a, b), ds(b, n)
