"""Multitask: shared towers trained on retrieval (in-batch softmax) and rating prediction together."""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_recommenders as tfrs  # noqa: E402

try:
    from pipeline.models import features as F
    from pipeline.models import ranking, retrieval, towers
except ImportError:  # user-module wheel
    import features as F  # type: ignore[no-redef]
    import ranking  # type: ignore[no-redef]
    import retrieval  # type: ignore[no-redef]
    import towers  # type: ignore[no-redef]


class MultitaskModel(tfrs.Model):
    def __init__(self, vocab_sizes, embedding_dim, candidate_features, retrieval_weight=1.0, rating_weight=1.0):
        super().__init__()
        self.query_tower = towers.query_tower(vocab_sizes, embedding_dim)
        self.candidate_tower = towers.candidate_tower(vocab_sizes, embedding_dim)
        self.rating_head = towers.RatingHead()
        num = int(len(candidate_features[F.xf(F.PRODUCT_ID)]))
        ds = tf.data.Dataset.from_tensor_slices(candidate_features).batch(512).map(
            lambda f: (f[F.xf(F.PRODUCT_ID)], self.candidate_tower(f)))
        self.retrieval_task = retrieval.retrieval_task(ds, num)
        self.ranking_task = ranking.ranking_task()
        self.retrieval_weight = float(retrieval_weight)
        self.rating_weight = float(rating_weight)

    def compute_loss(self, features, training=False):
        q = self.query_tower(features)
        c = self.candidate_tower(features)
        labels = tf.reshape(features[F.xf(F.LABEL)], [-1, 1])
        rating_loss = self.ranking_task(labels=labels, predictions=self.rating_head(q, c))
        retrieval_loss = self.retrieval_task(q, c, candidate_ids=tf.reshape(features[F.xf(F.PRODUCT_ID)], [-1]),
                                             compute_metrics=not training)
        return (self.retrieval_weight * towers.average_loss(retrieval_loss)
                + self.rating_weight * towers.average_loss(rating_loss))

    def score_candidates(self, query_embedding, candidate_embeddings):
        return tf.linalg.matmul(query_embedding, candidate_embeddings, transpose_b=True)


def build(vocab_sizes, embedding_dim, candidate_features, retrieval_weight=1.0, rating_weight=1.0):
    return MultitaskModel(vocab_sizes, embedding_dim, candidate_features, retrieval_weight, rating_weight)
