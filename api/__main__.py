"""`python -m api` runs the qihub CLI."""

from api.cli import app

app()
