"""`python -m localcloud.cloudrun_emulator --port P --state FILE --project PROJ --location LOC`."""

from __future__ import annotations

from localcloud.cloudrun_emulator.app import create_app
from localcloud.emulator import command_line, configure_logging, serve


def main(argv: list[str] | None = None) -> None:
    parser = command_line("python -m localcloud.cloudrun_emulator",
                          "Local Cloud Run (REST subset of the Admin API v2 services) that runs each service's "
                          "serving server as a local process",
                          "JSON file holding the services; on start, their serving processes are started again. "
                          "Serving logs go to <its directory>/logs/run-<service>.log")
    args = parser.parse_args(argv)

    configure_logging()
    app = create_app(args.state, args.project, args.location)
    # on exit, the serving processes stop too
    serve(app, args.host, args.port, app.extensions["cloudrun_emulator"].close)


if __name__ == "__main__":
    main()
