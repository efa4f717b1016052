"""start.sh with a local model directory and a stub tensorflow_model_server (first on PATH) that records how it
was started. Needs only Python, pytest and bash."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

START = Path(__file__).resolve().parent.parent / "start.sh"
STUB = """#!/usr/bin/env bash
python3 -c 'import json, os, sys; json.dump({"pid": os.getppid(), "args": sys.argv[1:]}, open(os.environ["STUB_RECORD"], "w"))' "$@"
"""
# Maps gs://BUCKET/... to $FAKE_GCS/BUCKET/... for `gcloud storage ls|cp -r`.
GCLOUD_STUB = """#!/usr/bin/env bash
set -e
[ "$1" = storage ] || exit 2
verb=$2; shift 2
map() { echo "${FAKE_GCS}/${1#gs://}"; }
case "$verb" in
  ls) p=$(map "$1"); if [ -d "$p" ]; then for c in "$p"/*; do echo "$1${c##*/}/"; done
      elif [ -e "$p" ]; then echo "$1"; else echo "ERROR: $1 matched no objects" >&2; exit 1; fi ;;
  cp) [ "$1" = -r ] && shift; src=$(map "${1%/\\*}"); cp -R "$src"/. "$2" ;;
esac
"""


def write_saved_model(directory: Path) -> None:
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"\x08\x01")
    (directory / "variables" / "variables.index").write_bytes(b"index")
    (directory / "fingerprint.pb").write_bytes(b"fp")


@pytest.fixture
def sandbox(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("tensorflow_model_server", STUB), ("gcloud", GCLOUD_STUB)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    pushed = tmp_path / "pushed_model"
    write_saved_model(pushed / "1700000100")
    write_saved_model(pushed / "1700000200")
    return tmp_path


def run(sandbox: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {"PATH": f"{sandbox / 'bin'}:{os.environ['PATH']}", "MODELS_ROOT": str(sandbox / "models"),
            "STUB_RECORD": str(sandbox / "record.json"), "FAKE_GCS": str(sandbox / "gcs"), "PORT": "8123"}
    full.update(env)
    proc = subprocess.Popen(["bash", str(START), *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out, err = proc.communicate(timeout=60)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    result.pid = proc.pid
    return result


def recorded(sandbox: Path) -> dict | None:
    path = sandbox / "record.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_serves_the_versioned_directory_with_batching(sandbox):
    result = run(sandbox, "--rest_api_timeout_in_ms=5000", MODEL_NAME="recs",
                 MODEL_PATH=f"{sandbox}/pushed_model/1700000200/", MODEL_VERSION="1700000200")
    assert result.returncode == 0, result.stderr
    record = recorded(sandbox)
    assert record["pid"] == result.pid  # exec'd: the server replaces the script's process
    models = sandbox / "models"
    batching = models / "batching_parameters.txt"
    assert record["args"] == ["--port=8500", "--rest_api_port=8123", "--model_name=recs",
                              f"--model_base_path={models}/recs", "--enable_batching=true",
                              f"--batching_parameters_file={batching}", "--rest_api_timeout_in_ms=5000"]
    assert (models / "recs" / "1700000200" / "saved_model.pb").exists()
    assert (models / "recs" / "1700000200" / "variables" / "variables.index").exists()
    assert [p.name for p in (models / "recs").iterdir()] == ["1700000200"]
    text = batching.read_text()
    cores = len(os.sched_getaffinity(0))
    values = dict(re.findall(r"^(\w+) \{ value: (\d+) \}$", text, re.M))
    assert values == {"max_batch_size": "1024", "batch_timeout_micros": "0", "num_batch_threads": str(cores),
                      "max_enqueued_batches": str(cores)}
    assert "pad_variable_length_inputs: false" in text


def test_file_url_version_from_path_and_batching_overrides(sandbox):
    result = run(sandbox, MODEL_NAME="recs", MODEL_PATH=f"file://{sandbox}/pushed_model/1700000100",
                 TF_SERVING_NUM_BATCH_THREADS="4", TF_SERVING_BATCH_TIMEOUT_MICROS="2000")
    assert result.returncode == 0, result.stderr
    assert (sandbox / "models" / "recs" / "1700000100" / "saved_model.pb").exists()
    text = (sandbox / "models" / "batching_parameters.txt").read_text()
    assert "num_batch_threads { value: 4 }" in text and "batch_timeout_micros { value: 2000 }" in text
    assert "max_enqueued_batches { value: 4 }" in text


def test_gcs_path_is_fetched_with_gcloud_storage(sandbox):
    bucket = sandbox / "gcs" / "bucket" / "models"
    bucket.mkdir(parents=True)
    (sandbox / "pushed_model").rename(bucket / "pushed_model")
    result = run(sandbox, MODEL_NAME="recs", MODEL_PATH="gs://bucket/models/pushed_model/1700000200/")
    assert result.returncode == 0, result.stderr
    assert (sandbox / "models" / "recs" / "1700000200" / "variables" / "variables.index").exists()
    result = run(sandbox, MODEL_NAME="recs", MODEL_PATH="gs://bucket/models/pushed_model/")
    assert result.returncode != 0
    assert "unversioned parent" in result.stderr and "gs://bucket/models/pushed_model/1700000200/" in result.stderr


def test_missing_saved_model_fails_loudly(sandbox):
    empty = sandbox / "pushed_model" / "1700000300"
    empty.mkdir()
    (empty / "variables").mkdir()
    result = run(sandbox, MODEL_NAME="recs", MODEL_PATH=str(empty))
    assert result.returncode != 0
    assert f"{empty}/saved_model.pb not found" in result.stderr
    assert recorded(sandbox) is None and not (sandbox / "models" / "recs").exists()


def test_unversioned_parent_fails_and_names_a_version(sandbox):
    parent = sandbox / "pushed_model"
    result = run(sandbox, MODEL_NAME="recs", MODEL_PATH=f"{parent}/", MODEL_VERSION="1700000200")
    assert result.returncode != 0
    assert f"{parent}/saved_model.pb not found" in result.stderr
    assert "unversioned parent" in result.stderr and "1700000100 1700000200" in result.stderr
    assert f"{parent}/1700000200/" in result.stderr
    assert recorded(sandbox) is None


@pytest.mark.parametrize(("env", "needle"), [
    ({"MODEL_NAME": "recs"}, "MODEL_PATH is not set"),
    ({"MODEL_PATH": "/nowhere/1"}, "MODEL_NAME is not set"),
    ({"MODEL_NAME": "recs", "MODEL_PATH": "/nowhere/at/all/1"}, "MODEL_PATH /nowhere/at/all/1 is not a directory"),
    ({"MODEL_NAME": "recs", "MODEL_PATH": "s3://bucket/m/1"}, "scheme not supported"),
])
def test_bad_configuration_is_named(sandbox, env, needle):
    result = run(sandbox, **env)
    assert result.returncode != 0
    assert needle in result.stderr
    assert recorded(sandbox) is None


def test_non_integer_version_is_refused(sandbox):
    result = run(sandbox, MODEL_NAME="recs", MODEL_PATH=f"{sandbox}/pushed_model/1700000100", MODEL_VERSION="v2")
    assert result.returncode != 0 and "'v2' is not an integer" in result.stderr
