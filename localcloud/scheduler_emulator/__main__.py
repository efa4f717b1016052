"""`python -m localcloud.scheduler_emulator --port P --state FILE --project PROJ --location LOC`."""

from __future__ import annotations

import logging

from localcloud.emulator import command_line, configure_logging, serve
from localcloud.scheduler_emulator.app import create_app
from localcloud.scheduler_emulator.firing import NoPublisher, PubSubRestPublisher


def main(argv: list[str] | None = None) -> None:
    parser = command_line("python -m localcloud.scheduler_emulator",
                          "Local Cloud Scheduler (REST subset of CloudScheduler v1) that fires Pub/Sub-target jobs "
                          "on their cron",
                          "JSON file holding the jobs; reloaded on start",
                          pubsub_help="host:port of the Pub/Sub emulator (default: $PUBSUB_EMULATOR_HOST); without "
                                      "it every delivery fails and is recorded in the job's status")
    args = parser.parse_args(argv)

    configure_logging()
    if args.pubsub_emulator_host:
        publisher = PubSubRestPublisher(args.pubsub_emulator_host)
    else:
        logging.getLogger(__name__).warning("no Pub/Sub emulator configured: jobs cannot be delivered")
        publisher = NoPublisher()
    app = create_app(args.state, args.project, args.location, publisher)
    # on exit, the dispatcher stops cleanly
    serve(app, args.host, args.port, app.extensions["scheduler_dispatcher"].stop)


if __name__ == "__main__":
    main()
