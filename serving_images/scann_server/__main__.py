"""``python -m scann_server [--host H] [--port P]``: check the configuration and the bundle, then serve with
gunicorn (threaded worker; the model is loaded in the worker, TensorFlow is not fork-safe)."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import sys
from dataclasses import replace

from scann_server.bundle import BundleError, is_remote, stage_bundle
from scann_server.config import ConfigError, ServerConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scann_server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="listen address (default: $HOST or 0.0.0.0)")
    parser.add_argument("--port", type=int, help="listen port (default: $PORT or 8080)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServerConfig.from_env(host=args.host, port=args.port)
        if not 1 <= config.port <= 65535:
            raise ConfigError(f"--port {config.port} must be between 1 and 65535")
        local_dir, tmp = _stage(config.bundle_path)
    except (ConfigError, BundleError) as exc:
        print(f"scann_server: {exc}", file=sys.stderr)
        return 2
    try:
        _serve(replace(config, bundle_path=local_dir), config.bundle_path)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _stage(bundle_path: str) -> tuple[str, str | None]:
    """Checks (and copies a gs:// bundle locally). A gs:// copy needs TensorFlow's file system; it runs in a spawned
    child so that this process, which gunicorn forks, never initialises TensorFlow."""
    if not is_remote(bundle_path):
        return stage_bundle(bundle_path)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(stage_bundle, (bundle_path,))


def _serve(config: ServerConfig, original_path: str) -> None:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        def load_config(self):
            for key, value in {"bind": f"{config.host}:{config.port}", "workers": config.workers,
                               "worker_class": "gthread", "threads": config.threads,
                               # 0: no worker timeout; start-up may build a large index (Cloud Run's own advice).
                               "timeout": 0, "graceful_timeout": 10, "accesslog": None, "errorlog": "-",
                               "loglevel": os.environ.get("LOG_LEVEL", "info").lower(),
                               "proc_name": f"scann_server {config.model_name}"}.items():
                self.cfg.set(key, value)

        def load(self):
            from scann_server.app import create_app

            logging.getLogger("scann_server").info("loading bundle %s (staged at %s)", original_path,
                                                   config.bundle_path)
            return create_app(config)

    Server().run()


if __name__ == "__main__":
    sys.exit(main())
