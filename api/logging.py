"""Structured JSON logging (structlog) for the service."""

import logging

import structlog


def configure_logging(level: str = "INFO") -> None:
    """Log JSON lines with ISO timestamps at the given level."""
    logging.basicConfig(format="%(message)s", level=level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter is not service news
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
