"""Demo data for `make serve`: one demo lab with a known key and a few real certificates from `demo/`."""

from pathlib import Path

from sqlmodel import Session, select

from certificates.models import Certificate
from certificates.service import Actor, submit_certificate
from certificates.xml import parse_xml
from organizations.models import ApiKey, Organization, OrganizationCreate, OrganizationKind, Scope
from organizations.service import create_api_key, create_organization
from storage.service import sha256_hex

DEMO_LAB_NAME = "Demo Calibration Laboratory (qihub demo data)"
# A fixed, documented key so a person trying the hub can call the API at once; never use it in production.
DEMO_LAB_KEY = "qh_demo_lab_key_for_local_trials_only"


def load_demo(session: Session, *, folder: Path) -> str:
    """Create the demo lab, its key and its certificates unless already present; say what was done."""
    lab = session.exec(select(Organization).where(Organization.name == DEMO_LAB_NAME)).first()
    if lab is None:
        lab = create_organization(
            session,
            data=OrganizationCreate(
                name=DEMO_LAB_NAME,
                kind=OrganizationKind.lab,
                accreditation_number="D-K-00000-00-00 (demo)",
                unified_social_credit_code="91110000000000000X",
            ),
        )
    key = session.exec(select(ApiKey).where(ApiKey.organization_id == lab.id)).first()
    if key is None:
        create_api_key(
            session,
            organization_id=lab.id,
            name="demo key",
            scopes=[Scope.certificates_read, Scope.certificates_write],
            key=DEMO_LAB_KEY,
        )
    actor = Actor(organization=lab)
    known = set(session.exec(select(Certificate.sha256).where(Certificate.organization_id == lab.id)))
    added = 0
    for path in sorted(folder.glob("certificates/*.xml")):
        content = path.read_bytes()
        if sha256_hex(content) in known:
            continue
        submit_certificate(session, actor=actor, content=content, root=parse_xml(content), issue=True, public=True)
        added += 1
    return f"demo lab {lab.id}: {added} certificate(s) added; API key: {DEMO_LAB_KEY}"
