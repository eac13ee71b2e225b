"""Print the app's OpenAPI document (`make openapi` writes it to openapi/openapi.json)."""

import json
import sys
import tempfile
from pathlib import Path

from api.app import create_app
from storage.settings import Settings


def openapi_document() -> dict[str, object]:
    """The OpenAPI document of a freshly built app."""
    with tempfile.TemporaryDirectory() as folder:
        return create_app(Settings(data_dir=Path(folder))).openapi()


if __name__ == "__main__":
    sys.stdout.write(json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n")
