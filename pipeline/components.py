"""Custom TFX components: the metrics gate (blessing), the versioned pusher and the Vertex exit handler.

The gate reads the Trainer's ``training_metrics.json`` instead of running TFMA's Evaluator: the TFRS models
score a customer against the whole catalogue (recall@K needs every candidate), which TFMA's per-example
evaluation of a serving signature does not express; the Trainer already computes these metrics on the
validation and test splits.
"""

import json
import os

from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.types.standard_artifacts import Model, ModelBlessing, ModelRun, PushedModel

METRICS_FILE = "training_metrics.json"
REPORT_FILE = "push_report.json"


def bundle_base(model_base: str) -> str:
    """Where the ScaNN serving bundles live for a push base: ``<base>_serving_bundle/<version>/``."""
    return model_base.rstrip("/") + "_serving_bundle"


def report_path(report_dir: str, version: int) -> str:
    return os.path.join(report_dir, f"{int(version)}.json")


def _copy_tree(src: str, dst: str) -> None:
    import tensorflow as tf

    for root, _, files in tf.io.gfile.walk(src):
        rel = os.path.relpath(root, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(target, name), overwrite=True)


def _read_json(path: str) -> dict:
    import tensorflow as tf

    with tf.io.gfile.GFile(path) as fh:
        return json.loads(fh.read())


@tfx.dsl.components.component
def MetricsGate(
    model_run: InputArtifact[ModelRun],
    blessing: OutputArtifact[ModelBlessing],
    model_type: Parameter[str],
    recall_threshold: Parameter[float] = -1.0,
    rmse_threshold: Parameter[float] = -1.0,
) -> None:
    """Blesses when recall@100 >= recall_threshold (retrieval, multitask) / rmse <= rmse_threshold (ranking,
    multitask). A negative threshold means "not configured"."""
    import tensorflow as tf

    from pipeline.models import metrics as M

    result = _read_json(os.path.join(model_run.uri, METRICS_FILE))
    blessed, reason = M.is_blessed(
        result, model_type,
        recall_threshold=recall_threshold if recall_threshold >= 0 else None,
        rmse_threshold=rmse_threshold if rmse_threshold >= 0 else None)
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"), "w") as fh:
        fh.write(reason)
    blessing.set_int_custom_property("blessed", 1 if blessed else 0)
    blessing.set_string_custom_property("reason", reason)


@tfx.dsl.components.component
def VersionedPusher(
    model: InputArtifact[Model],
    model_run: InputArtifact[ModelRun],
    blessing: InputArtifact[ModelBlessing],
    pushed_model: OutputArtifact[PushedModel],
    serving_model_dir: Parameter[str],
    not_blessed_model_dir: Parameter[str],
    model_version: Parameter[int],
    report_dir: Parameter[str],
) -> None:
    """Copies the SavedModel to ``<base>/<model_version>/`` (base depends on the blessing) and the serving bundle
    to ``<base>_serving_bundle/<model_version>/``; writes the push report the run event is built from."""
    import tensorflow as tf

    from pipeline.models import metrics as M

    blessed = tf.io.gfile.exists(os.path.join(blessing.uri, "BLESSED"))
    base = serving_model_dir if blessed else not_blessed_model_dir
    version = str(int(model_version))
    dest = os.path.join(base, version)
    _copy_tree(os.path.join(model.uri, "Format-Serving"), dest)
    if not tf.io.gfile.exists(os.path.join(dest, "saved_model.pb")):
        raise RuntimeError(f"push incomplete: no saved_model.pb in {dest}")
    bundle_src = os.path.join(model.uri, "serving_bundle")
    bundle_dest = None
    if tf.io.gfile.exists(bundle_src):
        bundle_dest = os.path.join(bundle_base(base), version)
        _copy_tree(bundle_src, bundle_dest)
    metrics_uri = os.path.join(model_run.uri, METRICS_FILE)
    result = _read_json(metrics_uri)
    report = {
        "blessed": blessed,
        "model_version": int(model_version),
        "pushed_model_uri": dest.rstrip("/") + "/",
        "serving_bundle_uri": (bundle_dest.rstrip("/") + "/") if bundle_dest else None,
        "metrics_uri": metrics_uri,
        "blessing_uri": blessing.uri,
        "metrics": M.flat_metrics(result),
        "retrieval_algorithm": (result.get("info") or {}).get("retrieval_algorithm"),
        "model_type": result.get("model_type"),
    }
    payload = json.dumps(report, indent=2, sort_keys=True)
    for path in (os.path.join(pushed_model.uri, REPORT_FILE), report_path(report_dir, model_version)):
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.gfile.GFile(path, "w") as fh:
            fh.write(payload)
    pushed_model.set_int_custom_property("pushed", 1)
    pushed_model.set_int_custom_property("blessed", 1 if blessed else 0)
    pushed_model.set_string_custom_property("pushed_destination", dest)
    pushed_model.set_string_custom_property("pushed_version", version)
