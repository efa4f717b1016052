"""`python -m localcloud.vertex_emulator --port P --state FILE --project PROJ --location LOC`."""

from __future__ import annotations

import logging

from localcloud.emulator import command_line, configure_logging, serve
from localcloud.vertex_emulator.app import create_app
from localcloud.vertex_emulator.publishing import AUDIT_TOPIC, NullPublisher, PubSubRestPublisher


def main(argv: list[str] | None = None) -> None:
    parser = command_line("python -m localcloud.vertex_emulator",
                          "Local Vertex AI Model Registry (REST subset of ModelService v1)",
                          "JSON file holding the registry; reloaded on start",
                          pubsub_help="host:port of the Pub/Sub emulator (default: $PUBSUB_EMULATOR_HOST); "
                                      "without it audit entries are not published")
    parser.add_argument("--audit-topic", default=AUDIT_TOPIC)
    args = parser.parse_args(argv)

    configure_logging()
    if args.pubsub_emulator_host:
        publisher = PubSubRestPublisher(args.pubsub_emulator_host, args.project, args.audit_topic)
    else:
        logging.getLogger(__name__).warning("no Pub/Sub emulator configured: audit entries are not published")
        publisher = NullPublisher()
    app = create_app(args.state, args.project, args.location, publisher)
    # on exit, entries not yet delivered get logged
    serve(app, args.host, args.port, publisher.close)


if __name__ == "__main__":
    main()
