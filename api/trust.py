"""Wiring of the trust domain into an app: keys, listeners (transparency log) and state."""

from fastapi import FastAPI


def install_trust(app: FastAPI) -> None:
    """Attach trust services to the app (filled by the trust issue)."""
    return None
