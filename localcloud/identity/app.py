"""HTTP face of the local token issuer: its certificates (what google-auth's verify_token fetches)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, jsonify

from localcloud.emulator import create_flask_app
from localcloud.identity.tokens import certs, load_or_create


def create_app(state_path: Path, project: str, location: str) -> Flask:
    key = load_or_create(Path(state_path))
    app = create_flask_app(__name__, project, location, health=lambda: {"kid": key["kid"]})

    @app.get("/")
    @app.get("/certs")
    def certificates():
        response = jsonify(certs(key))
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    return app
