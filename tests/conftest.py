"""Shared fixtures: the real Firestore and Pub/Sub emulators, started once per test session on free ports."""

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "functions", ROOT, ROOT / "tests", ROOT / "tests" / "unit"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from localcloud import processes  # noqa: E402

TEST_PROJECT = "registrar-test"


@pytest.fixture(scope="session")
def emulator_dir():
    with tempfile.TemporaryDirectory(prefix="registrar-emulators-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def firestore_emulator(emulator_dir):
    """host:port of a running Firestore emulator; FIRESTORE_EMULATOR_HOST is set for the session."""
    port = processes.free_port()
    pid = processes.start_firestore_emulator(port, emulator_dir / "firestore.log")
    host = f"127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    os.environ["GOOGLE_CLOUD_PROJECT"] = TEST_PROJECT
    yield host
    processes.stop(pid)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def pubsub_emulator(emulator_dir):
    """host:port of a running Pub/Sub emulator; PUBSUB_EMULATOR_HOST is set for the session."""
    port = processes.free_port()
    pid = processes.start_pubsub_emulator(port, TEST_PROJECT, emulator_dir / "pubsub.log", emulator_dir / "pubsub-data")
    host = f"127.0.0.1:{port}"
    saved = os.environ.get("PUBSUB_EMULATOR_HOST")
    os.environ["PUBSUB_EMULATOR_HOST"] = host
    yield host
    processes.stop(pid)
    if saved is None:
        os.environ.pop("PUBSUB_EMULATOR_HOST", None)
    else:
        os.environ["PUBSUB_EMULATOR_HOST"] = saved


@pytest.fixture
def firestore_store(firestore_emulator):
    """A FirestoreStore on the emulator, emptied before each test."""
    from registrar.adapters.firestore import FirestoreStore

    processes.reset_firestore_emulator(firestore_emulator, TEST_PROJECT)
    return FirestoreStore.connect(TEST_PROJECT)
