"""Run the pipeline locally (LocalDagRunner, SQLite MLMD, CSV from the synthetic generator) and publish one
PipelineRunEvent.

    python -m pipeline.runners.local --model-type retrieval --interactions 5000 --output /tmp/run \
        [--training-run-id ID --model-name NAME] [--baseline-model-uri DIR --baseline-version V]

Writes ``<output>/pipeline_run_event.json`` always; publishes it to the Pub/Sub emulator topic
``pipeline-events`` when PUBSUB_EMULATOR_HOST is set (project: GOOGLE_CLOUD_PROJECT).
SIGTERM or SIGINT stops the run: it ends CANCELLED and the event says so (``LocalPipelineRunner.cancel``).
Exit codes: 0 succeeded, 1 pipeline failed, 3 the event could not be published, 4 cancelled.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pipeline import events, lineage  # noqa: E402

STAGES = ["CsvExampleGen", "StatisticsGen", "SchemaGen", "Transform", "Trainer", "Evaluator", "EvaluationGate",
          "Pusher"]


class Cancelled(BaseException):
    """Raised in the main thread when the run is asked to stop (SIGTERM / SIGINT)."""


def _cancel(signum, _frame):
    raise Cancelled(f"cancelled by {signal.Signals(signum).name}")


class StageWatcher:
    """Follows the run by the component directories appearing under the pipeline root; shows progress."""

    def __init__(self, pipeline_root: str, stages=STAGES, use_rich=None):
        self.pipeline_root = pipeline_root
        self.stages = list(stages)
        self.current = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._started = {}
        self._rich = None
        if use_rich is not False:
            try:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                self._rich = Progress(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.completed}/{task.total} stages"), TimeElapsedColumn())
            except ImportError:
                self._rich = None

    def started_stages(self):
        try:
            present = set(os.listdir(self.pipeline_root))
        except FileNotFoundError:
            return []
        return [s for s in self.stages if s in present]

    def _update(self):
        for stage in self.started_stages():
            if stage not in self._started:
                self._started[stage] = time.time()
                self.current = stage
                if self._rich is not None:
                    self._rich.update(self._task, completed=self.stages.index(stage), description=f"running {stage}")
                else:
                    print(f"[{time.strftime('%H:%M:%S')}] {stage} started", flush=True)

    def _loop(self):
        while not self._stop.wait(1.0):
            self._update()

    def __enter__(self):
        if self._rich is not None:
            self._rich.start()
            self._task = self._rich.add_task("starting", total=len(self.stages))
        self._thread.start()
        return self

    def finish(self, ok: bool):
        self._stop.set()
        self._thread.join(timeout=5)
        self._update()
        if self._rich is not None:
            done = len(self.stages) if ok else self.stages.index(self.current) if self.current else 0
            self._rich.update(self._task, completed=done, description="done" if ok else f"failed in {self.current}")
            self._rich.stop()
        else:
            print(f"[{time.strftime('%H:%M:%S')}] {'done' if ok else f'failed in {self.current}'}", flush=True)

    def __exit__(self, *exc):
        if not self._stop.is_set():
            self.finish(exc[0] is None)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Run the Registrar TFX pipeline locally.")
    p.add_argument("--model-type", choices=["retrieval", "ranking", "multitask"], default="retrieval")
    p.add_argument("--interactions", type=int, default=5000, help="synthetic interactions to generate")
    p.add_argument("--data-root", help="use this directory of CSV files instead of generating data")
    p.add_argument("--seed", type=int, default=42,
                   help="seeds the synthetic data and the training (a CPU run with the same seed trains the same model)")
    p.add_argument("--output", required=True, help="directory for data, pipeline root, MLMD, pushed models")
    p.add_argument("--training-run-id", help="registrar training run id (default: local-<version>)")
    p.add_argument("--model-name", help="registered model name (default: <model-type>-local)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--early-stopping-patience", type=int, default=2)
    p.add_argument("--recall-threshold", type=float, default=0.05,
                   help="value threshold: recall@100 >= this (retrieval, multitask); < 0: none")
    p.add_argument("--rmse-threshold", type=float, default=1.5,
                   help="value threshold: RMSE <= this (ranking, multitask); < 0: none")
    p.add_argument("--recall-change-tolerance", type=float, default=0.0,
                   help="change threshold: recall@100 may drop this much below the baseline model's; < 0: none")
    p.add_argument("--rmse-change-tolerance", type=float, default=0.0,
                   help="change threshold: RMSE may rise this much above the baseline model's; < 0: none")
    p.add_argument("--baseline-model-uri", default="",
                   help="the baseline model's versioned SavedModel directory (empty: no baseline)")
    p.add_argument("--baseline-version", default="", help="the baseline model's version id (for the event)")
    p.add_argument("--gpu-count", type=int, default=0,
                   help="GPUs to train on; the run fails when fewer are visible (never trains on the CPU instead)")
    p.add_argument("--retrieval-algorithm", choices=["auto", "brute_force", "scann"], default="auto")
    p.add_argument("--plain", action="store_true", help="plain progress lines instead of a progress bar")
    p.add_argument("--verbose", action="store_true", help="show TFX / Beam logs")
    return p.parse_args(argv)


def _threshold(value: float) -> float | None:
    return None if value is None or value < 0 else value


def run(args) -> int:
    import datetime as dt

    # Decided once, in unix microseconds (seconds collide for two runs in one second); every path and event use it.
    version = time.time_ns() // 1_000
    training_run_id = events.sanitise_run_id(args.training_run_id or f"local-{version}")
    model_name = args.model_name or f"{args.model_type}-local"
    output = os.path.abspath(args.output)
    pipeline_name = f"registrar-{args.model_type}"
    pipeline_root = os.path.join(output, "pipeline_root")
    report_dir = os.path.join(output, "run_reports")
    event_path = os.path.join(output, "pipeline_run_event.json")
    os.makedirs(output, exist_ok=True)

    if not args.verbose:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)
    state, error, report, data_input = "FAILED", None, None, None
    watcher = StageWatcher(pipeline_root, use_rich=False if args.plain else None)
    started = time.time()
    previous = {sig: signal.signal(sig, _cancel) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        from tfx import v1 as tfx

        from pipeline.data import synthetic
        from pipeline.pipeline import create_pipeline

        data_root = args.data_root or synthetic.write_dataset(os.path.join(output, "data"), args.interactions,
                                                               args.seed)
        data_input = lineage.file_input(data_root) if os.path.isdir(data_root) else None
        pipeline = create_pipeline(
            pipeline_name, pipeline_root,
            model_version=version,
            data_root=data_root,
            serving_model_dir=os.path.join(output, "pushed_model"),
            not_blessed_model_dir=os.path.join(output, "not_blessed_model"),
            model_type=args.model_type, epochs=args.epochs, batch_size=args.batch_size,
            embedding_dim=args.embedding_dim, learning_rate=args.learning_rate,
            early_stopping_patience=args.early_stopping_patience,
            retrieval_algorithm=args.retrieval_algorithm, seed=args.seed,
            recall_threshold=_threshold(args.recall_threshold), rmse_threshold=_threshold(args.rmse_threshold),
            recall_change_tolerance=_threshold(args.recall_change_tolerance),
            rmse_change_tolerance=_threshold(args.rmse_change_tolerance),
            baseline_model_uri=args.baseline_model_uri, baseline_version=args.baseline_version,
            gpu_count=args.gpu_count,
            report_dir=report_dir,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                os.path.join(output, "metadata.sqlite")),
            beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"],
        )
        with watcher:
            try:
                tfx.orchestration.LocalDagRunner().run(pipeline)
            except BaseException:
                watcher.finish(False)
                raise
            watcher.finish(True)
        with open(os.path.join(report_dir, f"{version}.json")) as fh:
            report = json.load(fh)
        state = "SUCCEEDED"
    except (Cancelled, KeyboardInterrupt) as exc:
        state, error = "CANCELLED", str(exc) or "interrupted"
    except Exception as exc:  # the run failed: report it, with the stage it failed in
        state, error = "FAILED", f"{type(exc).__name__}: {exc}"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    event = events.build_event(
        training_run_id=training_run_id, model_name=model_name, model_type=args.model_type,
        pipeline_job_name=f"{pipeline_name}-{version}", state=state,
        occurred_at=dt.datetime.now(dt.timezone.utc),
        stage=watcher.current if state != "SUCCEEDED" else "Pusher",
        report=report, pipeline_root=pipeline_root, error_message=error, lineage_input=data_input)
    events.write_event(event, event_path)
    print(f"{state} in {time.time() - started:.0f}s; training_run_id={training_run_id} version={version}")
    if report:
        print(f"  pushed model: {report['pushed_model_uri']} (blessed={report['blessed']})")
        print(f"  metrics: {json.dumps(report['metrics'], sort_keys=True)}")
        if report.get("evaluation"):
            print(f"  evaluation: {report['evaluation']['reason']}")
        if report.get("scann_tuning"):
            print(f"  retrieval: {report['scann_tuning']['reason']}")
    if error:
        print(f"  error: {error}", file=sys.stderr)
    print(f"  event: {event_path}")
    code = {"SUCCEEDED": 0, "CANCELLED": 4}.get(state, 1)
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if host:
        project = os.environ.get("GOOGLE_CLOUD_PROJECT")
        try:
            if not project:
                raise RuntimeError("GOOGLE_CLOUD_PROJECT is not set")
            ids = events.publish_to_emulator(event, host, project)
            print(f"  published to {host} projects/{project}/topics/{events.TOPIC}: {ids}")
        except Exception as exc:
            print(f"  could not publish the event: {exc}", file=sys.stderr)
            code = code or 3
    return code


def main(argv=None) -> None:
    sys.exit(run(parse_args(argv)))


if __name__ == "__main__":
    main()
