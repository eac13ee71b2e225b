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


def install_openapi(app: FastAPI) -> None:
    """Make the app serve its OpenAPI document with all definitions resolvable."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = hoist_nested_definitions(original())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def openapi_document() -> dict[str, object]:
    """The OpenAPI document of a freshly built app."""
    from api.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        return create_app(Settings(data_dir=Path(folder))).openapi()


if __name__ == "__main__":
    sys.stdout.write(json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n")
