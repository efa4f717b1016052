"""A local Cloud Scheduler that speaks the REST subset Registrar uses and fires jobs to the Pub/Sub emulator."""

from localcloud.emulator import ApiError
from localcloud.scheduler_emulator.app import create_app
from localcloud.scheduler_emulator.firing import (
    Dispatcher,
    EmulatorClock,
    MessagePublisher,
    NoPublisher,
    PublishError,
    PubSubRestPublisher,
)
from localcloud.scheduler_emulator.jobs import SchedulerState, next_firing

__all__ = ["ApiError", "Dispatcher", "EmulatorClock", "MessagePublisher", "NoPublisher", "PubSubRestPublisher",
           "PublishError", "SchedulerState", "create_app", "next_firing"]
