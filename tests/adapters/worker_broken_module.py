"""A module whose own import fails (for the worker test: a broken module must not pass for a missing one)."""

import qihub_no_such_dependency  # noqa: F401
