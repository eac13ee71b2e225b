"""Domain errors every package raises; the API maps each class to an RFC 9457 problem."""

from typing import Any


class DomainError(Exception):
    """Base of the hub's expected failures: a stable machine code and a human title."""

    code = "domain-error"
    title = "Request failed"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFoundError(DomainError):
    """The thing asked for does not exist, or the caller may not know it exists."""

    code = "not-found"
    title = "Not found"


class ConflictError(DomainError):
    """The request clashes with what is stored (duplicate, reused idempotency key)."""

    code = "conflict"
    title = "Conflict"


class InvalidInputError(DomainError):
    """The input was read but breaks a rule (schema, semantic rule, JSON Schema)."""

    code = "invalid-input"
    title = "Invalid input"


class InvalidTransitionError(DomainError):
    """The requested status change is not allowed from the current status."""

    code = "invalid-transition"
    title = "Status change not allowed"


class PermissionDeniedError(DomainError):
    """The caller is known but lacks the right to do this."""

    code = "forbidden"
    title = "Forbidden"
