"""Web pages for people: the home page."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func
from sqlmodel import select

from api.deps import SessionDep
from certificates.models import Certificate

router = APIRouter(tags=["pages"], include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parents[1] / "templates"), autoescape=select_autoescape()
)


@router.get("/", response_class=HTMLResponse)
def home(session: SessionDep) -> HTMLResponse:
    """The landing page with links to the API and operations endpoints."""
    count = session.exec(select(func.count()).select_from(Certificate)).one()
    return HTMLResponse(templates.get_template("home.html").render(certificate_count=count))
