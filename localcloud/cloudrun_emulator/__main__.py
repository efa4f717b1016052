"""`python -m localcloud.cloudrun_emulator --port P --state FILE --project PROJ --location LOC`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from werkzeug.serving import run_simple

from localcloud.cloudrun_emulator.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localcloud.cloudrun_emulator",
                                     description="Local Cloud Run (REST subset of the Admin API v2 services) that "
                                                 "runs each service's serving server as a local process")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True,
                        help="JSON file holding the services; on start, their serving processes are started again. "
                             "Serving logs go to <its directory>/logs/run-<service>.log")
    parser.add_argument("--project", required=True)
    parser.add_argument("--location", required=True)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(args.state, args.project, args.location)
    state = app.extensions["cloudrun_emulator"]
    # `registrar local down` stops us with SIGTERM: leave through `finally` so the serving processes stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run_simple(args.host, args.port, app, threaded=True)
    finally:
        state.close()


if __name__ == "__main__":
    main()
