"""Domain errors every package raises; the API maps each class to an RFC 9457 problem."""

from typing import Any


def rebuild_error(kind: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    """An exception of `kind` with these args and attributes, made without calling its constructor."""
    error = kind.__new__(kind, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class DomainError(Exception):
    """Base of the hub's expected failures: a stable machine code and a human title."""

    code = "domain-error"
    title = "Request failed"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (batch documents examined in the document processes); the default
        # pickling calls the constructor again with `args`, which most subclasses do not take.
        return (rebuild_error, (type(self), self.args, dict(self.__dict__)))


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
