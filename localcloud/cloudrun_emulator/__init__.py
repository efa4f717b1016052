"""A local Cloud Run: the Admin API v2 services subset Registrar uses, serving each service as a local process."""

from localcloud.cloudrun_emulator.app import create_app
from localcloud.cloudrun_emulator.services import CloudRunState

__all__ = ["CloudRunState", "create_app"]
