"""Query (customer) and candidate (product) towers shared by the three model types."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402

try:
    from pipeline.models import features as F
except ImportError:  # staged by TFX as a user-module wheel: sibling modules are top level
    import features as F  # type: ignore[no-redef]


class Tower(tf.keras.Model):
    """Embeddings for categorical features + numeric features -> MLP -> an embedding of ``embedding_dim``."""

    def __init__(self, categorical, numeric, vocab_sizes, embedding_dim, hidden_units=(64,), name=None):
        super().__init__(name=name)
        self._categorical = list(categorical)
        self._numeric = list(numeric)
        self.embeddings = {
            f: tf.keras.layers.Embedding(vocab_sizes[f] + F.NUM_OOV_BUCKETS, embedding_dim, name=f"{f}_embedding")
            for f in self._categorical
        }
        self.hidden = [tf.keras.layers.Dense(u, activation="relu") for u in hidden_units]
        self.out = tf.keras.layers.Dense(embedding_dim)

    def call(self, inputs):
        parts = [self.embeddings[f](tf.reshape(inputs[F.xf(f)], [-1])) for f in self._categorical]
        parts += [tf.reshape(tf.cast(inputs[F.xf(f)], tf.float32), [-1, 1]) for f in self._numeric]
        x = tf.concat(parts, axis=1)
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)


def query_tower(vocab_sizes, embedding_dim):
    return Tower(F.CUSTOMER_CATEGORICAL, F.CUSTOMER_NUMERIC, vocab_sizes, embedding_dim, name="query_tower")


def candidate_tower(vocab_sizes, embedding_dim):
    return Tower(F.PRODUCT_CATEGORICAL, F.PRODUCT_NUMERIC, vocab_sizes, embedding_dim, name="candidate_tower")


class RatingHead(tf.keras.Model):
    """Predicts a rating from a (query embedding, candidate embedding) pair; works on [..., D] inputs."""

    def __init__(self, hidden_units=(64, 32), name="rating_head"):
        super().__init__(name=name)
        self.hidden = [tf.keras.layers.Dense(u, activation="relu") for u in hidden_units]
        self.out = tf.keras.layers.Dense(1)

    def call(self, query_embedding, candidate_embedding):
        x = tf.concat([query_embedding, candidate_embedding], axis=-1)
        for layer in self.hidden:
            x = layer(x)
        return self.out(x)


def average_loss(per_example_loss):
    """Mean over the GLOBAL batch: correct on one device and under MirroredStrategy (gradients are summed)."""
    return tf.nn.compute_average_loss(per_example_loss)


def recall_ks(num_candidates: int):
    ks = [k for k in (5, 10, 50, 100) if k <= num_candidates]
    return ks or [num_candidates]
