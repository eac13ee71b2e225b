"""Validation findings shared by the schema check, the semantic rules and the JSON builder."""

from enum import StrEnum

from pydantic import BaseModel


class Severity(StrEnum):
    """How bad a finding is: only `error` makes a document invalid."""

    error = "error"
    warning = "warning"
    info = "info"


class Finding(BaseModel):
    """One problem (or remark) found in a document, located by XPath and source line."""

    rule: str
    severity: Severity
    message: str
    path: str | None = None
    line: int | None = None
