import pytest

from pipeline.models import metrics as M

RETRIEVAL_HISTORY = {
    "loss": [5.0, 4.0], "regularization_loss": [0.0, 0.0], "total_loss": [5.0, 4.0],
    "factorized_top_k/top_5_categorical_accuracy": [0.0, 0.0],
    "factorized_top_k/top_100_categorical_accuracy": [0.0, 0.0],
    "val_loss": [4.5, 3.9],
    "val_factorized_top_k/top_5_categorical_accuracy": [0.01, 0.02],
    "val_factorized_top_k/top_10_categorical_accuracy": [0.02, 0.04],
    "val_factorized_top_k/top_50_categorical_accuracy": [0.1, 0.2],
    "val_factorized_top_k/top_100_categorical_accuracy": [0.3, 0.4],
}
RANKING_HISTORY = {"loss": [2.0, 1.0], "rmse": [1.4, 1.0], "mae": [1.1, 0.8],
                   "val_loss": [1.8, 1.2], "val_rmse": [1.3, 1.1], "val_mae": [1.0, 0.9]}


def test_retrieval_metrics_come_from_validation_last_epoch():
    m = M.extract_metrics(RETRIEVAL_HISTORY, {"loss": 3.0, "factorized_top_k/top_100_categorical_accuracy": 0.35},
                          "retrieval")
    assert m["final"]["recall_at_100"] == 0.4
    assert m["final"]["recall_at_5"] == 0.02
    assert m["final"]["val_loss"] == 3.9 and m["final"]["train_loss"] == 4.0
    assert m["history"]["train"]["loss"] == [5.0, 4.0]
    assert "recall_at_100" not in m["history"]["train"]  # not computed while training
    assert m["history"]["validation"]["recall_at_100"] == [0.3, 0.4]
    assert m["test"] == {"loss": 3.0, "recall_at_100": 0.35}
    assert m["epochs_run"] == 2


def test_ranking_metrics_read_rmse_and_mae_not_loss():
    m = M.extract_metrics(RANKING_HISTORY, {"loss": 1.5, "rmse": 1.2, "mae": 0.95}, "ranking")
    assert m["final"]["rmse"] == 1.1 and m["final"]["mae"] == 0.9
    assert m["test"] == {"loss": 1.5, "rmse": 1.2, "mae": 0.95}
    assert not any(k.startswith("recall") for k in m["final"])


def test_multitask_has_both():
    history = {**RETRIEVAL_HISTORY, **{k: v for k, v in RANKING_HISTORY.items() if k != "loss" and k != "val_loss"}}
    m = M.extract_metrics(history, {"rmse": 1.0, "factorized_top_k/top_100_categorical_accuracy": 0.5}, "multitask")
    assert m["final"]["recall_at_100"] == 0.4 and m["final"]["rmse"] == 1.1
    assert m["test"]["rmse"] == 1.0 and m["test"]["recall_at_100"] == 0.5
    flat = M.flat_metrics(m)
    assert flat["test_rmse"] == 1.0 and flat["recall_at_100"] == 0.4


def test_unknown_model_type():
    with pytest.raises(ValueError):
        M.extract_metrics({}, {}, "clustering")


@pytest.mark.parametrize("kind,final,kw,expected", [
    ("retrieval", {"recall_at_100": 0.4}, {"recall_threshold": 0.3}, True),
    ("retrieval", {"recall_at_100": 0.2}, {"recall_threshold": 0.3}, False),
    ("retrieval", {}, {"recall_threshold": 0.3}, False),
    ("ranking", {"rmse": 0.9}, {"rmse_threshold": 1.0}, True),
    ("ranking", {"rmse": 1.1}, {"rmse_threshold": 1.0}, False),
    ("ranking", {"rmse": 0.9}, {"recall_threshold": 0.1}, False),  # no ranking threshold configured
    ("multitask", {"recall_at_100": 0.4, "rmse": 1.1}, {"recall_threshold": 0.3, "rmse_threshold": 1.0}, False),
    ("multitask", {"recall_at_100": 0.4, "rmse": 0.9}, {"recall_threshold": 0.3, "rmse_threshold": 1.0}, True),
])
def test_blessing_gate(kind, final, kw, expected):
    blessed, reason = M.is_blessed({"final": final}, kind, **kw)
    assert blessed is expected, reason
