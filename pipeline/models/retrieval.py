"""TFRS two-tower retrieval: query tower from customer features, candidate tower from product features."""
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


def retrieval_task(candidate_embeddings_ds, num_candidates):
    """In-batch softmax (per-example loss, accidental hits removed) + recall@K over all candidates.

    ``candidate_embeddings_ds`` yields (product index, embedding) so recall matches on ids, not on scores.
    """
    return tfrs.tasks.Retrieval(
        loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
        metrics=tfrs.metrics.FactorizedTopK(candidates=candidate_embeddings_ds, ks=towers.recall_ks(num_candidates)),
        remove_accidental_hits=True,
    )


class RetrievalModel(tfrs.Model):
    def __init__(self, vocab_sizes, embedding_dim, candidate_features):
        """``candidate_features``: dict of transformed product features (one row per catalogue product)."""
        super().__init__()
        self.query_tower = towers.query_tower(vocab_sizes, embedding_dim)
        self.candidate_tower = towers.candidate_tower(vocab_sizes, embedding_dim)
        num = int(len(candidate_features[F.xf(F.PRODUCT_ID)]))
        ds = tf.data.Dataset.from_tensor_slices(candidate_features).batch(512).map(
            lambda f: (f[F.xf(F.PRODUCT_ID)], self.candidate_tower(f)))
        self.task = retrieval_task(ds, num)

    def compute_loss(self, features, training=False):
        q = self.query_tower(features)
        c = self.candidate_tower(features)
        per_example = self.task(q, c, candidate_ids=tf.reshape(features[F.xf(F.PRODUCT_ID)], [-1]),
                                compute_metrics=not training)
        return towers.average_loss(per_example)

    def score_candidates(self, query_embedding, candidate_embeddings):
        return tf.linalg.matmul(query_embedding, candidate_embeddings, transpose_b=True)


def build(vocab_sizes, embedding_dim, candidate_features):
    return RetrievalModel(vocab_sizes, embedding_dim, candidate_features)
