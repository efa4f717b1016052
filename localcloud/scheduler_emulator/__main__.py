"""`python -m localcloud.scheduler_emulator --port P --state FILE --project PROJ --location LOC`."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from werkzeug.serving import run_simple

from localcloud.scheduler_emulator.app import create_app
from localcloud.scheduler_emulator.firing import NoPublisher, PubSubRestPublisher


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localcloud.scheduler_emulator",
                                     description="Local Cloud Scheduler (REST subset of CloudScheduler v1) that "
                                                 "fires Pub/Sub-target jobs on their cron")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True, help="JSON file holding the jobs; reloaded on start")
    parser.add_argument("--project", required=True)
    parser.add_argument("--location", required=True)
    parser.add_argument("--pubsub-emulator-host", default=os.environ.get("PUBSUB_EMULATOR_HOST"),
                        help="host:port of the Pub/Sub emulator (default: $PUBSUB_EMULATOR_HOST); without it "
                             "every delivery fails and is recorded in the job's status")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.pubsub_emulator_host:
        publisher = PubSubRestPublisher(args.pubsub_emulator_host)
    else:
        logging.getLogger(__name__).warning("no Pub/Sub emulator configured: jobs cannot be delivered")
        publisher = NoPublisher()
    app = create_app(args.state, args.project, args.location, publisher)
    # `registrar local down` stops us with SIGTERM: exit through `finally` so the dispatcher stops cleanly.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run_simple(args.host, args.port, app, threaded=True)
    finally:
        app.extensions["scheduler_dispatcher"].stop()


if __name__ == "__main__":
    main()
