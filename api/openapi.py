"""The app's OpenAPI document: nested JSON-Schema definitions hoisted so every `$ref` resolves.

Some responses embed a pydantic model's own JSON Schema (for example a certificate with its content); those
carry their definitions under a local `$defs` with `#/$defs/…` pointers that mean nothing at document level.
`install_openapi` moves them into `components/schemas` and rewrites the pointers, so validators and client
generators can resolve the whole document. `python -m api.openapi` prints it (`make openapi`).
"""

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from storage.settings import Settings

LOCAL_DEFS = "#/$defs/"
COMPONENTS = "#/components/schemas/"
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": COMPONENTS + "Problem"}}}
FASTAPI_VALIDATION_ERROR = COMPONENTS + "HTTPValidationError"


def hoist_nested_definitions(document: dict[str, Any]) -> dict[str, Any]:
    """Move every nested `$defs` into `components/schemas` and point `#/$defs/X` refs there (in place)."""
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            nested = node.pop("$defs", None)
            if isinstance(nested, dict):
                for name, definition in nested.items():
                    visit(definition)
                    schemas.setdefault(name, definition)
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(LOCAL_DEFS):
                node["$ref"] = COMPONENTS + ref[len(LOCAL_DEFS) :]
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(document)
    return document


def document_problem_answers(document: dict[str, Any]) -> dict[str, Any]:
    """Describe the errors every operation really answers (in place).

    The problem handlers turn request-validation errors into problem+json, and a JSON body that cannot be
    decoded into a 400 problem; FastAPI's generated defaults (422 `HTTPValidationError` as application/json)
    would document a shape no client ever receives.
    """
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            for status, response in responses.items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if status == "422" and schema.get("$ref") == FASTAPI_VALIDATION_ERROR:
                    responses[status] = {"description": "Unprocessable content", "content": PROBLEM_CONTENT}
            body_types = operation.get("requestBody", {}).get("content", {})
            if "application/json" in body_types and "400" not in responses:
                responses["400"] = {"description": "Bad request", "content": PROBLEM_CONTENT}
    schemas = document.get("components", {}).get("schemas", {})
    if FASTAPI_VALIDATION_ERROR not in json.dumps(document.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


def install_openapi(app: FastAPI) -> None:
    """Make the app serve its OpenAPI document with all definitions resolvable."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problem_answers(hoist_nested_definitions(original()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def openapi_document() -> dict[str, object]:
    """The OpenAPI document of a freshly built app."""
    from api.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        return create_app(Settings(data_dir=Path(folder))).openapi()


if __name__ == "__main__":
    sys.stdout.write(json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n")
