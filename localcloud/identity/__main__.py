"""`python -m localcloud.identity --port P --state FILE --project PROJ --location LOC`."""

from __future__ import annotations

from localcloud.emulator import command_line, configure_logging, serve
from localcloud.identity.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = command_line("python -m localcloud.identity",
                          "The local stack's ID-token issuer: serves the certificates its test tokens are verified with",
                          "JSON file holding the signing key; created on first start")
    args = parser.parse_args(argv)
    configure_logging()
    serve(create_app(args.state, args.project, args.location), args.host, args.port, lambda: None)


if __name__ == "__main__":
    main()
