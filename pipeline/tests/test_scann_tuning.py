"""ScaNN tuning against exact search, on data where searching the wrong partition shows: clustered candidates and
queries that sit between clusters, so each query's exact top-k spans several partitions."""
import numpy as np
import pytest

K = 100


def _hard_data(n=4000, dim=16, clusters=40, queries=300, seed=5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    centres *= 3.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    candidates = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    mix = np.zeros((queries, clusters))
    for row in mix:
        row[rng.choice(clusters, 3, replace=False)] = rng.uniform(0.5, 1.0, 3)
    q = mix @ centres
    q *= 3.0 / np.linalg.norm(q, axis=1, keepdims=True)
    q += 0.1 * rng.normal(size=q.shape)
    return candidates.astype(np.float32), q.astype(np.float32)


def _exact(candidates, queries, k):
    """Independent of the module under test: a full argsort."""
    return np.argsort(-(queries @ candidates.T), axis=1, kind="stable")[:, :k]


def _recall(approx, exact):
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx.tolist(), exact.tolist())]))


@pytest.fixture(scope="module")
def data():
    return _hard_data()


@pytest.fixture(scope="module")
def tuned(data):
    from pipeline.models import scann_tuning

    candidates, queries = data
    return scann_tuning.tune(candidates, queries, K, prefer_scann=True)


def test_exact_top_k_is_the_argsort_order(data):
    from pipeline.models import scann_tuning

    candidates, queries = data
    np.testing.assert_array_equal(scann_tuning.exact_top_k(candidates, queries[:50], K), _exact(candidates,
                                                                                              queries[:50], K))


def test_the_data_punishes_a_wrong_partition(data, tuned):
    """Searching only the nearest leaf misses most of the exact top-100 here, so a passing recall means the tuning
    searched enough of the right partitions."""
    from pipeline.models import scann_tuning

    candidates, queries = data
    params = tuned.params
    searcher = scann_tuning.build_searcher(candidates, K, params["num_leaves"], 1, params["reordering_num_neighbors"],
                                           len(candidates), params["dimensions_per_block"])
    one_leaf = scann_tuning.search(searcher, queries, K, 1, params["reordering_num_neighbors"], threads=1)
    assert _recall(one_leaf, _exact(candidates, queries, K)) < 0.6


def test_the_chosen_configuration_reaches_the_target_against_exact_search(data, tuned):
    from pipeline.models import scann_tuning

    candidates, queries = data
    assert tuned.algorithm == "scann" and tuned.searcher is not None
    assert tuned.params["num_neighbors"] == K and tuned.params["num_leaves_to_search"] < tuned.params["num_leaves"]
    approx = scann_tuning.search(tuned.searcher, queries, K, tuned.params["num_leaves_to_search"],
                                 tuned.params["reordering_num_neighbors"], threads=1)
    recall = _recall(approx, _exact(candidates, queries, K))
    assert recall >= scann_tuning.TARGET_RECALL
    assert recall == pytest.approx(tuned.recall, abs=1e-9)
    summary = tuned.summary()
    assert summary["recall_at_k"] == round(recall, 4) and summary["target_recall"] == 0.95
    assert summary["speedup"] == round(tuned.brute_force_ms_per_query / tuned.scann_ms_per_query, 3)
    assert summary["configurations_tried"] == len(tuned.tried) > 1


def test_the_fastest_passing_configuration_is_chosen(tuned):
    passing = [t for t in tuned.tried if t["recall_at_k"] >= 0.95]
    chosen = {k: tuned.params[k] for k in ("num_leaves", "dimensions_per_block", "num_leaves_to_search",
                                           "reordering_num_neighbors")}
    fastest = min(passing, key=lambda t: t["ms_per_query"])
    assert {k: fastest[k] for k in chosen} == chosen


def test_auto_picks_scann_only_when_it_is_faster(data):
    from pipeline.models import scann_tuning

    candidates, queries = data
    result = scann_tuning.tune(candidates, queries, K, repeats=1)
    assert (result.algorithm == "scann") == (result.speedup > 1.0)
    assert (result.searcher is not None) == (result.algorithm == "scann")


def test_an_unreachable_target_means_brute_force_with_the_reason(data):
    from pipeline.models import scann_tuning

    candidates, queries = data
    result = scann_tuning.tune(candidates, queries[:50], K, target_recall=1.01, prefer_scann=True, repeats=1,
                               leaves=[63])
    assert result.algorithm == "brute_force" and result.searcher is None and result.params is None
    assert "no ScaNN configuration reached recall@100 >= 1.01" in result.reason
