"""Subscribers to audit events: other domains (transparency log, knowledge graph) follow the registry.

Listeners are per app (held in `session.info`), so isolated test hubs never see each other's events.
`in_transaction` listeners run inside the writer's transaction (all or nothing with the change);
`after_commit` listeners run once the change is durable (e.g. updating an external RDF store).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session

from storage.models import AuditEvent

EventListener = Callable[[Session, AuditEvent], None]
HOOKS_KEY = "qihub.event_hooks"
PENDING_KEY = "qihub.pending_events"


@dataclass
class EventHooks:
    """The listeners of one hub, by subject kind ('certificate', …)."""

    in_transaction: dict[str, list[EventListener]] = field(default_factory=dict)
    after_commit: dict[str, list[EventListener]] = field(default_factory=dict)

    def on_event(self, subject_kind: str, listener: EventListener, *, after_commit: bool = False) -> None:
        """Register a listener for events about one kind of subject."""
        table = self.after_commit if after_commit else self.in_transaction
        table.setdefault(subject_kind, []).append(listener)


def dispatch_in_transaction(session: Session, event: AuditEvent) -> None:
    """Run the in-transaction listeners now and queue the after-commit ones."""
    hooks: EventHooks | None = session.info.get(HOOKS_KEY)
    if hooks is None:
        return
    for listener in hooks.in_transaction.get(event.subject_kind, []):
        listener(session, event)
    if hooks.after_commit.get(event.subject_kind):
        session.info.setdefault(PENDING_KEY, []).append(event)


def has_pending_events(session: Session) -> bool:
    """Whether after-commit listeners are queued for this session's events."""
    return bool(session.info.get(PENDING_KEY))


def dispatch_after_commit(session: Session) -> None:
    """Run the queued after-commit listeners (called by `session_scope` after a successful commit)."""
    hooks: EventHooks | None = session.info.get(HOOKS_KEY)
    pending: list[AuditEvent] = session.info.pop(PENDING_KEY, [])
    if hooks is None:
        return
    for event in pending:
        for listener in hooks.after_commit.get(event.subject_kind, []):
            listener(session, event)
