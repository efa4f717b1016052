"""The two kinds of failure every handler distinguishes (ARCHITECTURE.md §3)."""


class TransientError(Exception):
    """Worth retrying: Firestore or a Google API unavailable, a 5xx, a timeout. Raised so Pub/Sub redelivers."""


class Contention(TransientError):
    """A Firestore transaction lost a race; the bus retries it, then lets Pub/Sub redeliver."""


class InvalidField(ValueError):
    """A value that is refused; `field` names it, so the answer (a 400, a usage line) can name it too."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PermanentError(Exception):
    """Retrying cannot help: the message is answered (quarantined with its reason) and acknowledged."""

    def __init__(self, reason: str, *, kind: str = "invalid"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class Ignored(Exception):
    """A well-formed message that asks for nothing (a failed API call, a pipeline state we do not track)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def is_dependency_failure(exc: BaseException) -> bool:
    """Whether `exc` is something we depend on failing (Firestore, Vertex AI, Pub/Sub, the network unavailable) —
    worth a redelivery — rather than the message being bad. Adapters raise TransientError for those; a connection
    or timeout error that got past one counts too."""
    return isinstance(exc, (TransientError, ConnectionError, TimeoutError))
