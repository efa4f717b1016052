"""Feature names and the Transform ``preprocessing_fn``.

Raw columns (CSV / BigQuery): customer_id, city, segment, revenue, product_id, category, price, rating, timestamp.
Transformed features carry the ``_xf`` suffix: vocabulary indices for the string ids and categories (one OOV
bucket each, so an unseen customer still gets an embedding), z-scored log revenue / log price, float rating.
"""
from __future__ import annotations

CUSTOMER_ID = "customer_id"
PRODUCT_ID = "product_id"
CUSTOMER_CATEGORICAL = ["customer_id", "city", "segment"]
CUSTOMER_NUMERIC = ["revenue"]
PRODUCT_CATEGORICAL = ["product_id", "category"]
PRODUCT_NUMERIC = ["price"]
LABEL = "rating"
VOCAB_FEATURES = CUSTOMER_CATEGORICAL + PRODUCT_CATEGORICAL
NUMERIC_FEATURES = CUSTOMER_NUMERIC + PRODUCT_NUMERIC
CUSTOMER_FEATURES = CUSTOMER_CATEGORICAL + CUSTOMER_NUMERIC
PRODUCT_FEATURES = PRODUCT_CATEGORICAL + PRODUCT_NUMERIC
NUM_OOV_BUCKETS = 1


def xf(name: str) -> str:
    """Name of the transformed feature."""
    return f"{name}_xf"


def vocab_name(name: str) -> str:
    """File name of the Transform vocabulary for ``name``; read back with ``vocabulary_by_name``."""
    return name


def _dense(x):
    import tensorflow as tf

    if isinstance(x, tf.sparse.SparseTensor):
        default = "" if x.dtype == tf.string else tf.zeros([], x.dtype)
        x = tf.sparse.to_dense(tf.sparse.reset_shape(x, [x.dense_shape[0], 1]), default_value=default)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs):
    """tf.Transform preprocessing: vocabularies for ids/categories, normalised revenue and price."""
    import tensorflow as tf
    import tensorflow_transform as tft

    outputs = {}
    for name in VOCAB_FEATURES:
        outputs[xf(name)] = tft.compute_and_apply_vocabulary(
            _dense(inputs[name]), vocab_filename=vocab_name(name), num_oov_buckets=NUM_OOV_BUCKETS)
    for name in NUMERIC_FEATURES:
        value = tf.math.log1p(tf.maximum(tf.cast(_dense(inputs[name]), tf.float32), 0.0))
        outputs[xf(name)] = tft.scale_to_z_score(value)
    outputs[xf(LABEL)] = tf.cast(_dense(inputs[LABEL]), tf.float32)
    return outputs
