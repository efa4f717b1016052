"""Rollback and comparison benchmark (not a test).

    .venv/bin/python bench/rollback_bench.py [--cloud-run] [--rounds 2]

1. Firestore reads / writes, counted by the instrumented InMemoryStore as Firestore bills them, through the real
   entry point (decode → bus → follow-up, fake Cloud Run): a deploy (for reference), a rollback carried out by a
   traffic switch, its duplicate delivery, a rollback that has to redeploy, a comparison of two versions of one
   model and one across two models.
2. With --cloud-run: wall time against the local Cloud Run emulator (started here, real `run_v2` client, the real
   scann server from `.venv-pipeline` per revision) of each step a rollback takes: deploy version 1, deploy
   version 2 (a new revision), roll back by routing all traffic to version 1's revision, deploy version 2 again
   (the traffic goes back to its revision), and roll back once version 1's revision is deleted (a redeploy).
   Locally every step that changes the serving revision starts a model server; on Cloud Run a traffic switch
   creates no revision and pulls no image.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, median, quiet_logs, table

for _path in (ROOT / "tests", ROOT / "tests" / "unit"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def store_ops() -> str:
    from registrar.comparison.queries import compare_across, compare_versions
    from test_deployment import MODEL, deploy_payload
    from test_rollback import SERVICE, Releases, rollback_payload

    world = Releases()
    rows = []

    def measured(label: str, action) -> None:
        reads, writes = world.store.reads, world.store.writes
        action()
        rows.append((label, world.store.reads - reads, world.store.writes - writes))

    measured("deploy version 1", lambda: world.deliver(deploy_payload("req-deploy-bench-1", version_id="1")))
    measured("deploy version 2", lambda: world.deliver(deploy_payload("req-deploy-bench-2", version_id="2",
                                                                      minute=55)))
    measured("rollback (traffic switch)", lambda: world.deliver(rollback_payload("req-rollback-bench-1",
                                                                                 minute=60)))
    measured("the same rollback again", lambda: world.deliver(rollback_payload("req-rollback-bench-1", minute=60)))
    world.deliver(deploy_payload("req-deploy-bench-3", version_id="3", minute=65))
    del world.serving.revisions[SERVICE][world.endpoint["releases"][0]["revision"]]
    measured("rollback (redeploy)", lambda: world.deliver(rollback_payload("req-rollback-bench-2", minute=70,
                                                                           version_id="1")))
    world.add_version("recs-other", "1", minute=7)
    measured("compare 2 versions of a model", lambda: compare_versions(world.store, MODEL, "1", "2"))
    measured("compare across 2 models", lambda: compare_across(world.store, (MODEL, "1"), ("recs-other", "1")))
    return table(("what", "reads", "writes"), rows, title="Firestore operations (InMemoryStore, counted as billed)")


def cloud_run(rounds: int) -> str:
    from registrar.adapters.cloudrun import CloudRunServing
    from registrar.kernel.ports import ServiceSpec
    from serving_bundle import build_serving_bundle, pipeline_python

    from localcloud import processes

    project, region = "registrar-bench", "us-central1"
    workdir = Path(tempfile.mkdtemp(prefix="rollback-bench-"))
    bundle = build_serving_bundle(workdir / "bundle")
    port = processes.free_port()
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT / "functions"), str(ROOT)]), "PYTHONUNBUFFERED": "1",
           "REGISTRAR_SERVING_PYTHON": str(pipeline_python())}
    pid = processes.spawn([sys.executable, "-m", "localcloud.cloudrun_emulator", "--port", str(port), "--state",
                           str(workdir / "state.json"), "--project", project, "--location", region],
                          log_path=workdir / "cloudrun.log", env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    steps: dict[str, list[float]] = {}
    try:
        processes.wait_http(f"{url}/healthz", timeout=60, pid=pid, log_path=workdir / "cloudrun.log")
        serving = CloudRunServing(project, region, api_endpoint=url, lro_timeout=280)
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import run_v2

        revisions = run_v2.RevisionsClient(transport="rest", client_options={"api_endpoint": url},
                                           credentials=AnonymousCredentials())

        def spec(service: str, version: str) -> ServiceSpec:
            return ServiceSpec(service_id=service, image="local/scann-server:bench",
                               env={"MODEL_NAME": "bench", "MODEL_VERSION": version, "BUNDLE_PATH": str(bundle.path)},
                               labels={"registrar-model": "bench", "registrar-version": version}, min_instances=0,
                               max_instances=1, memory="2Gi", cpu="1")

        def timed(step: str, action):
            started = time.perf_counter()
            state = action()
            steps.setdefault(step, []).append(time.perf_counter() - started)
            assert state is not None and state.ready, (step, state)
            return state

        for n in range(rounds):
            service = f"bench-rollback-{n}"
            one = timed("deploy version 1 (new service)", lambda s=service: serving.apply_service(spec(s, "1")))
            timed("deploy version 2 (new revision)", lambda s=service: serving.apply_service(spec(s, "2")))
            timed("rollback: all traffic to version 1's revision",
                  lambda s=service, r=one.latest_ready_revision: serving.route_all_traffic(
                      s, r, {"registrar-version": "1"}))
            timed("deploy version 2 again (traffic back to its revision)",
                  lambda s=service: serving.apply_service(spec(s, "2")))
            revisions.delete_revision(name=f"projects/{project}/locations/{region}/services/{service}/revisions/"
                                           f"{one.latest_ready_revision}").result(timeout=60)
            timed("rollback once that revision is gone (redeploy)",
                  lambda s=service: serving.apply_service(spec(s, "1")))
    finally:
        processes.stop(pid)
    rows = [(step, len(values), median(values), max(values)) for step, values in steps.items()]
    return table(("step (local Cloud Run, real run_v2 client)", "n", "median s", "max s"), rows,
                 title=f"Wall time per step, {rounds} rounds, on {os.cpu_count()} cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cloud-run", action="store_true", help="also time the steps on the local Cloud Run")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    quiet_logs()
    print(store_ops())
    if args.cloud_run:
        print()
        print(cloud_run(args.rounds))


if __name__ == "__main__":
    main()
