"""Server configuration from the environment.

These names are the contract with the deploy code (Cloud Run service env) and the local Cloud Run emulator.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ALGORITHMS = ("scann", "brute_force")


class ConfigError(ValueError):
    """A missing or invalid setting; the message names the variable."""


@dataclass(frozen=True)
class ServerConfig:
    model_name: str
    model_version: str
    bundle_path: str
    retrieval_algorithm: str | None = None  # None: what serving_config.json says
    port: int = 8080
    host: str = "0.0.0.0"
    max_top_k: int = 1000
    max_batch_size: int = 1024
    scann_min_candidates: int = 10000
    threads: int = 8
    workers: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> ServerConfig:
        env = os.environ if env is None else env
        values = {
            "model_name": _required(env, "MODEL_NAME"),
            "model_version": _required(env, "MODEL_VERSION"),
            "bundle_path": _required(env, "BUNDLE_PATH"),
            "retrieval_algorithm": _algorithm(env.get("RETRIEVAL_ALGORITHM", "")),
            "port": _int(env, "PORT", 8080, 1, 65535),
            "host": env.get("HOST", "").strip() or "0.0.0.0",
            "max_top_k": _int(env, "MAX_TOP_K", 1000, 1),
            "max_batch_size": _int(env, "MAX_BATCH_SIZE", 1024, 1),
            "scann_min_candidates": _int(env, "SCANN_MIN_CANDIDATES", 10000, 0),
            "threads": _int(env, "THREADS", 8, 1),
            "workers": _int(env, "WORKERS", 1, 1),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {name} is not set")
    if name == "MODEL_NAME" and any(c in value for c in "/: "):
        raise ConfigError(f"MODEL_NAME={value!r} may not contain '/', ':' or spaces (it is part of the URL)")
    return value


def _algorithm(value: str) -> str | None:
    value = value.strip().lower()
    if not value:
        return None
    if value not in ALGORITHMS:
        raise ConfigError(f"RETRIEVAL_ALGORITHM={value!r} is not one of {', '.join(ALGORITHMS)}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name}={value} must be {bound}")
    return value
