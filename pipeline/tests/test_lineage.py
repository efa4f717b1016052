"""The examples' fingerprint: the same rows give the same fingerprint however ExampleGen sharded and ordered them;
any changed, added or removed row changes it."""
import os

import pytest

from pipeline.tests.test_serving import serialized_examples


def _write(root, splits: dict, shards: int = 1, reverse: bool = False):
    import tensorflow as tf

    for split, records in splits.items():
        directory = os.path.join(root, f"Split-{split}")
        os.makedirs(directory, exist_ok=True)
        records = list(reversed(records)) if reverse else list(records)
        for shard in range(shards):
            path = os.path.join(directory, f"data_tfrecord-{shard:05d}-of-{shards:05d}.gz")
            with tf.io.TFRecordWriter(path, options="GZIP") as writer:
                for record in records[shard::shards]:
                    writer.write(record)
    return str(root)


@pytest.fixture(scope="module")
def rows(tiny_data):
    return tiny_data[2][:300]


def _lineage(root, splits):
    from pipeline import lineage

    return lineage.examples_lineage(root, list(splits))


def test_rows_per_split_and_a_fingerprint(tmp_path, rows):
    splits = {"train": serialized_examples(rows[:240]), "test": serialized_examples(rows[240:])}
    result = _lineage(_write(tmp_path, splits), splits)
    assert result["rows"] == {"train": 240, "test": 60}
    assert result["fingerprint"].startswith("sha256:") and len(result["fingerprint"]) == 7 + 64
    assert result["examples_uri"] == str(tmp_path)


def test_sharding_and_order_do_not_change_the_fingerprint(tmp_path, rows):
    splits = {"train": serialized_examples(rows[:240]), "test": serialized_examples(rows[240:])}
    one = _lineage(_write(tmp_path / "a", splits), splits)
    other = _lineage(_write(tmp_path / "b", splits, shards=3, reverse=True), splits)
    assert one == {**other, "examples_uri": one["examples_uri"]}


@pytest.mark.parametrize("change", ["edit", "add", "remove", "move"])
def test_any_changed_row_changes_the_fingerprint(tmp_path, rows, change):
    base = {"train": rows[:240], "test": rows[240:]}
    changed = {"train": list(base["train"]), "test": list(base["test"])}
    if change == "edit":
        changed["train"][7] = {**changed["train"][7], "rating": changed["train"][7]["rating"] % 5 + 1}
    elif change == "add":
        changed["test"].append(rows[0])
    elif change == "remove":
        changed["train"].pop()
    else:  # the same rows, another split
        changed["test"].append(changed["train"].pop())
    a = _lineage(_write(tmp_path / "a", {k: serialized_examples(v) for k, v in base.items()}), base)
    b = _lineage(_write(tmp_path / "b", {k: serialized_examples(v) for k, v in changed.items()}), changed)
    assert a["fingerprint"] != b["fingerprint"]


def test_inputs_name_what_a_run_read(tmp_path):
    from pipeline import lineage

    (tmp_path / "part").mkdir()
    (tmp_path / "b.csv").write_text("x")
    (tmp_path / "part" / "a.csv").write_text("y")
    assert lineage.file_input(str(tmp_path)) == {"kind": "files", "uris": [f"file://{tmp_path}/b.csv",
                                                                          f"file://{tmp_path}/part/a.csv"]}
    assert lineage.query_input("SELECT 1") == {"kind": "bigquery", "query": "SELECT 1"}
