"""Ranking: predicts the rating of a (customer, product) pair.

The task's MSE uses ``Reduction.NONE`` and the model averages with ``tf.nn.compute_average_loss`` (over the
global batch), so the loss stays correct under MirroredStrategy where replica gradients are summed.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402

try:
    from pipeline.models import features as F
    from pipeline.models import towers
except ImportError:  # user-module wheel
    import features as F  # type: ignore[no-redef]
    import towers  # type: ignore[no-redef]


def ranking_task():
    return tfrs.tasks.Ranking(
        loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.NONE),
        metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse"), tf.keras.metrics.MeanAbsoluteError(name="mae")],
    )


class RankingModel(tfrs.Model):
    def __init__(self, vocab_sizes, embedding_dim):
        super().__init__()
        self.query_tower = towers.query_tower(vocab_sizes, embedding_dim)
        self.candidate_tower = towers.candidate_tower(vocab_sizes, embedding_dim)
        self.rating_head = towers.RatingHead()
        self.task = ranking_task()

    def predict_rating(self, features):
        return self.rating_head(self.query_tower(features), self.candidate_tower(features))

    def compute_loss(self, features, training=False):
        labels = tf.reshape(features[F.xf(F.LABEL)], [-1, 1])
        per_example = self.task(labels=labels, predictions=self.predict_rating(features))
        return towers.average_loss(per_example)

    def score_candidates(self, query_embedding, candidate_embeddings):
        """Predicted rating of every candidate for every query: [B, D] x [N, D] -> [B, N]."""
        b = tf.shape(query_embedding)[0]
        n = tf.shape(candidate_embeddings)[0]
        q = tf.repeat(tf.expand_dims(query_embedding, 1), n, axis=1)
        c = tf.repeat(tf.expand_dims(candidate_embeddings, 0), b, axis=0)
        return tf.squeeze(self.rating_head(q, c), -1)


def build(vocab_sizes, embedding_dim, candidate_features=None):
    return RankingModel(vocab_sizes, embedding_dim)
