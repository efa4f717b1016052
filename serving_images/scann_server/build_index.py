"""``python -m scann_server.build_index BUNDLE``: build the bundle's ScaNN index and serialize it to
``BUNDLE/scann_index/``, so servers load it at start-up instead of training it. BUNDLE: local path, file:// or gs://.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from scann_server.bundle import INDEX_DIR, BundleError, copy_tree, is_remote, local_path, stage_bundle


def build_index(bundle_path: str, top_k: int | None = None) -> dict:
    """Builds, serializes and publishes the index; returns a summary. The scratch copy is replaced atomically
    for local bundles (a reader never sees half an index)."""
    import numpy as np

    from scann_server.retrieval import ScannIndex, default_scann_params, fingerprint

    local_dir, tmp = stage_bundle(bundle_path)
    try:
        with open(os.path.join(local_dir, "serving_config.json")) as fh:
            serving_config = json.load(fh)
        candidates = np.load(os.path.join(local_dir, "candidates.npy"), mmap_mode="r")
        k = top_k or int(serving_config.get("top_k", 100))
        params = serving_config.get("scann") or default_scann_params(candidates.shape[0], k)
        started = time.perf_counter()
        index = ScannIndex.build(candidates, params)
        scratch = tempfile.mkdtemp(prefix="scann-index-build-")
        try:
            out = os.path.join(scratch, INDEX_DIR)
            index.serialize(out, fingerprint(os.path.join(local_dir, "candidates.npy")))
            if is_remote(bundle_path):
                copy_tree(out, f"{bundle_path.rstrip('/')}/{INDEX_DIR}")
                target = f"{bundle_path.rstrip('/')}/{INDEX_DIR}"
            else:
                target = os.path.join(local_path(bundle_path), INDEX_DIR)
                staging = target + ".new"
                shutil.rmtree(staging, ignore_errors=True)
                shutil.copytree(out, staging)
                shutil.rmtree(target, ignore_errors=True)
                os.replace(staging, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"index": target, "num_candidates": int(candidates.shape[0]), "scann": index.params,
                "seconds": round(time.perf_counter() - started, 2)}
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scann_server.build_index", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="serving bundle directory (local path, file:// or gs://)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        summary = build_index(args.bundle)
    except BundleError as exc:
        print(f"build_index: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
