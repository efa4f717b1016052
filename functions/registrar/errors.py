"""The two kinds of failure every handler distinguishes (ARCHITECTURE.md §3)."""


class TransientError(Exception):
    """Worth retrying: Firestore or a Google API unavailable, a 5xx, a timeout. Raised so Pub/Sub redelivers."""


class Contention(TransientError):
    """A Firestore transaction lost a race; the bus retries it, then lets Pub/Sub redeliver."""


class PermanentError(Exception):
    """Retrying cannot help: the message is answered (quarantined with its reason) and acknowledged."""

    def __init__(self, reason: str, *, kind: str = "invalid"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
