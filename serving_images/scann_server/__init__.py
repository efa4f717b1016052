"""ScaNN retrieval server speaking TensorFlow Serving's REST API.

It runs a retrieval model's query tower (a standard SavedModel, no custom ops) and searches the candidate
embeddings of a serving bundle with ScaNN's numpy API, or exactly (brute force) for small catalogues, and answers
with the catalogue's real product ids. Importing this package imports neither TensorFlow nor ScaNN.
"""

from scann_server.config import ConfigError, ServerConfig


def create_app(config=None):
    """Flask app factory; ``config`` is a ServerConfig, a mapping of environment-style strings, or None (os.environ)."""
    from scann_server.app import create_app as _create_app

    return _create_app(config)


__all__ = ["ConfigError", "ServerConfig", "create_app"]
