"""Where the tests find the repository and the shared external corpus (beside the clone, as in CI)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
DCC_CORPUS = SHARED / "external" / "dcc"
XMLDSIG_CORPUS = SHARED / "external" / "xmldsig"
