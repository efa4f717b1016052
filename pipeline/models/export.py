"""What the Trainer exports: the served SavedModel (``serving_default`` for native TF Serving, ``evaluation`` for
TFMA) and, for retrieval models, the query tower of the ScaNN serving bundle.

Signatures per model type (all take raw features; Transform's graph is inside):

- retrieval: ``serving_default(customer_id, city, segment, revenue)`` -> ``product_ids`` [B, K], ``scores`` [B, K]
  (dot products, descending, over the whole catalogue: brute force inside the graph);
- multitask: as retrieval, plus ``ratings`` [B, K] (the rating head's prediction for each returned product);
- ranking: ``serving_default(customer_id, city, segment, revenue, product_id)`` -> ``scores`` [B] (the predicted
  rating of each (customer, product) pair) and ``known_product`` [B] (False: the id is not in the catalogue the
  model was trained on, and the product is scored as an unknown one).

``evaluation(examples)`` takes serialized ``tf.Example``s as ExampleGen wrote them and returns the model's
predictions next to the popularity baseline's, for TFMA: ``product_ids`` / ``scores`` and ``popular_product_ids``
/ ``popular_scores`` (retrieval, multitask: the most-interacted training products, the same for everyone),
``rating`` and ``popular_rating`` (ranking, multitask: the product's mean training rating, the global mean for
products the training split has not seen).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

try:
    from pipeline.models import features as F
except ImportError:  # user-module wheel
    import features as F  # type: ignore[no-redef]

CUSTOMER_INPUTS = {"customer_id": tf.string, "city": tf.string, "segment": tf.string, "revenue": tf.float32}
RANKING_INPUTS = {**CUSTOMER_INPUTS, "product_id": tf.string}
EVALUATION_SIGNATURE = "evaluation"


def serving_inputs(model_type: str) -> dict:
    return RANKING_INPUTS if model_type == "ranking" else CUSTOMER_INPUTS


def _spec(inputs: dict) -> list:
    return [tf.TensorSpec([None], dtype, name=name) for name, dtype in inputs.items()]


class RawFeatures(tf.Module):
    """Raw features in, transformed features out: Transform's graph, with every raw feature the request does not
    carry filled with an empty / zero value (Transform maps those to its OOV bucket or a z-score)."""

    def __init__(self, tf_transform_output):
        super().__init__()
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._spec = tf_transform_output.raw_feature_spec()

    def from_inputs(self, inputs: dict, batch):
        raw = {}
        for name, spec in self._spec.items():
            shape = tf.concat([[batch], tf.constant(list(spec.shape), tf.int32)], 0)
            if name in inputs:
                value = inputs[name] if spec.dtype == tf.string else tf.cast(inputs[name], spec.dtype)
                raw[name] = tf.reshape(value, shape)
            elif spec.dtype == tf.string:
                raw[name] = tf.fill(shape, "")
            else:
                raw[name] = tf.zeros(shape, spec.dtype)
        return self.tft_layer(raw)

    def from_examples(self, examples):
        return self.tft_layer(tf.io.parse_example(examples, self._spec))


def unknown_product_embedding(model, raw_features: RawFeatures) -> np.ndarray:
    """The candidate tower's embedding of a product it knows nothing about (OOV id and category, zero price)."""
    xf = raw_features.from_inputs({}, 1)
    return model.candidate_tower(xf).numpy().astype(np.float32)[0]


class Popularity:
    """The non-personalised baseline, from the training split: interaction counts and mean ratings per product
    vocabulary index (the last index is Transform's OOV bucket)."""

    def __init__(self, counts: np.ndarray, rating_sums: np.ndarray):
        self.counts = np.asarray(counts, np.float64)
        self.rating_sums = np.asarray(rating_sums, np.float64)
        total = float(self.counts.sum())
        self.global_mean = float(self.rating_sums.sum() / total) if total else 0.0

    def mean_ratings(self) -> np.ndarray:
        """Per vocabulary index; the global mean where the training split has no interaction."""
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(self.counts > 0, self.rating_sums / np.maximum(self.counts, 1), self.global_mean)
        return means.astype(np.float32)

    def top(self, candidate_index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions into the candidate rows, counts) of the k most-interacted candidates, ties by position."""
        counts = self.counts[candidate_index]
        order = np.lexsort((np.arange(len(counts)), -counts))[:k]
        return order, counts[order].astype(np.float32)

    def summary(self, product_ids: list, candidate_index: np.ndarray, k: int = 10) -> dict:
        rows, counts = self.top(candidate_index, k)
        return {"top_products": [product_ids[int(r)] for r in rows], "top_counts": [int(c) for c in counts],
                "training_interactions": int(self.counts.sum()), "global_mean_rating": self.global_mean}


class _Exported(tf.Module):
    def __init__(self, model, tf_transform_output):
        super().__init__()
        self.raw_features = RawFeatures(tf_transform_output)
        self.query_tower = model.query_tower
        self.candidate_tower = model.candidate_tower

    def signatures(self) -> dict:
        return {"serving_default": self.serve, EVALUATION_SIGNATURE: self.evaluate}


class RetrievalExport(_Exported):
    """retrieval and multitask: top-K over the catalogue (``with_ratings``: multitask's rating head too)."""

    def __init__(self, model, tf_transform_output, candidate_embeddings, product_ids, k, popularity: Popularity,
                 candidate_index, with_ratings: bool):
        super().__init__(model, tf_transform_output)
        self.rating_head = model.rating_head if with_ratings else None
        self.candidate_embeddings = tf.Variable(candidate_embeddings.astype(np.float32), trainable=False)
        self.product_ids = tf.Variable(tf.constant(product_ids, tf.string), trainable=False)
        self.k = int(min(k, len(product_ids)))
        rows, counts = popularity.top(np.asarray(candidate_index), self.k)
        self.popular_ids = tf.Variable(tf.constant([product_ids[int(r)] for r in rows], tf.string), trainable=False)
        self.popular_counts = tf.Variable(counts, trainable=False)
        if with_ratings:
            self.mean_ratings = tf.Variable(popularity.mean_ratings(), trainable=False)
        self.serve = tf.function(self._serve, input_signature=_spec(CUSTOMER_INPUTS))
        self.evaluate = tf.function(self._evaluate,
                                    input_signature=[tf.TensorSpec([None], tf.string, name="examples")])

    def _top_k(self, q):
        top = tf.math.top_k(tf.linalg.matmul(q, self.candidate_embeddings, transpose_b=True), k=self.k)
        return top.indices, top.values

    def _serve(self, customer_id, city, segment, revenue):
        xf = self.raw_features.from_inputs(
            {"customer_id": customer_id, "city": city, "segment": segment, "revenue": revenue},
            tf.shape(customer_id)[0])
        q = self.query_tower(xf)
        indices, scores = self._top_k(q)
        out = {"product_ids": tf.gather(self.product_ids, indices), "scores": scores}
        if self.rating_head is not None:
            c = tf.gather(self.candidate_embeddings, indices)
            qq = tf.repeat(tf.expand_dims(q, 1), self.k, axis=1)
            out["ratings"] = tf.squeeze(self.rating_head(qq, c), -1)
        return out

    def _evaluate(self, examples):
        xf = self.raw_features.from_examples(examples)
        q = self.query_tower(xf)
        indices, scores = self._top_k(q)
        batch = tf.shape(examples)[0]
        out = {"product_ids": tf.gather(self.product_ids, indices), "scores": scores,
               "popular_product_ids": tf.tile(self.popular_ids[None, :], [batch, 1]),
               "popular_scores": tf.tile(self.popular_counts[None, :], [batch, 1])}
        if self.rating_head is not None:
            c = self.candidate_tower(xf)
            out["rating"] = tf.reshape(self.rating_head(q, c), [-1])
            out["popular_rating"] = tf.gather(self.mean_ratings, _product_index(xf))
        return out


def _product_index(xf):
    return tf.reshape(tf.cast(xf[F.xf(F.PRODUCT_ID)], tf.int64), [-1])


class RankingExport(_Exported):
    """ranking: the predicted rating of (customer, product) pairs; catalogue products use their trained
    embeddings, an unknown product id the embedding of an unknown product."""

    def __init__(self, model, tf_transform_output, candidate_embeddings, product_ids, unknown_embedding,
                 popularity: Popularity):
        super().__init__(model, tf_transform_output)
        self.rating_head = model.rating_head
        embeddings = np.vstack([candidate_embeddings, unknown_embedding[None, :]]).astype(np.float32)
        self.embeddings = tf.Variable(embeddings, trainable=False)
        self.unknown_row = len(product_ids)
        self.lookup = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(product_ids, tf.string),
                                                tf.range(len(product_ids), dtype=tf.int64)),
            default_value=len(product_ids))
        self.mean_ratings = tf.Variable(popularity.mean_ratings(), trainable=False)
        self.serve = tf.function(self._serve, input_signature=_spec(RANKING_INPUTS))
        self.evaluate = tf.function(self._evaluate,
                                    input_signature=[tf.TensorSpec([None], tf.string, name="examples")])

    def _serve(self, customer_id, city, segment, revenue, product_id):
        xf = self.raw_features.from_inputs(
            {"customer_id": customer_id, "city": city, "segment": segment, "revenue": revenue},
            tf.shape(customer_id)[0])
        rows = self.lookup.lookup(product_id)
        scores = self.rating_head(self.query_tower(xf), tf.gather(self.embeddings, rows))
        return {"scores": tf.reshape(scores, [-1]), "known_product": tf.not_equal(rows, self.unknown_row)}

    def _evaluate(self, examples):
        xf = self.raw_features.from_examples(examples)
        rating = self.rating_head(self.query_tower(xf), self.candidate_tower(xf))
        return {"rating": tf.reshape(rating, [-1]),
                "popular_rating": tf.gather(self.mean_ratings, _product_index(xf))}


class QueryTowerModel(tf.Module):
    """Raw customer features in; ``query_embedding`` out. Standard ops only (for the ScaNN server)."""

    def __init__(self, model, tf_transform_output):
        super().__init__()
        self.raw_features = RawFeatures(tf_transform_output)
        self.query_tower = model.query_tower
        self.serve = tf.function(self._serve, input_signature=_spec(CUSTOMER_INPUTS))

    def _serve(self, customer_id, city, segment, revenue):
        xf = self.raw_features.from_inputs(
            {"customer_id": customer_id, "city": city, "segment": segment, "revenue": revenue},
            tf.shape(customer_id)[0])
        return {"query_embedding": self.query_tower(xf)}


class CandidateTowerModel(tf.Module):
    """The trained candidate tower on transformed product features (vocabulary indices, z-scored price); not
    served: benchmarks use it to embed catalogues larger than the training data's."""

    def __init__(self, model):
        super().__init__()
        self.candidate_tower = model.candidate_tower
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.int64, name=F.xf(F.PRODUCT_ID)),
            tf.TensorSpec([None], tf.int64, name=F.xf("category")),
            tf.TensorSpec([None], tf.float32, name=F.xf("price"))])

    def _serve(self, product_id_xf, category_xf, price_xf):
        return {"candidate_embedding": self.candidate_tower(
            {F.xf(F.PRODUCT_ID): product_id_xf, F.xf("category"): category_xf, F.xf("price"): price_xf})}


def serving_export(model, model_type, tf_transform_output, candidate_embeddings, product_ids, k, popularity,
                   candidate_index, unknown_embedding):
    if model_type == "ranking":
        return RankingExport(model, tf_transform_output, candidate_embeddings, product_ids, unknown_embedding,
                             popularity)
    return RetrievalExport(model, tf_transform_output, candidate_embeddings, product_ids, k, popularity,
                           candidate_index, with_ratings=model_type == "multitask")


def save(module, path: str, signatures: dict | None = None) -> None:
    tf.saved_model.save(module, path, signatures=signatures or {"serving_default": module.serve})
