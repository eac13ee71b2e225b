"""trust: trust anchors, signing certificates, hub-held keys, revocations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trust_anchors",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("fingerprint_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("crl_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True),
        sa.Column("crl_pem", sa.Text(), nullable=True),
        sa.Column("added_by_organization_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint_sha256"),
    )
    with op.batch_alter_table("trust_anchors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trust_anchors_kind"), ["kind"], unique=False)

    op.create_table(
        "signing_certificates",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("certificate_pem", sa.Text(), nullable=False),
        sa.Column("fingerprint_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("subject", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("issuer", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("not_before", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("not_after", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("trust_anchor_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("revocation_reason", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["trust_anchor_id"], ["trust_anchors.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint_sha256"),
    )
    with op.batch_alter_table("signing_certificates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signing_certificates_organization_id"), ["organization_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_signing_certificates_status"), ["status"], unique=False)

    op.create_table(
        "hub_signing_keys",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("signing_certificate_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("algorithm", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("encrypted_private_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"]),
        sa.ForeignKeyConstraint(["signing_certificate_id"], ["signing_certificates.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("signing_certificate_id"),
    )
    with op.batch_alter_table("hub_signing_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hub_signing_keys_organization_id"), ["organization_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hub_signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hub_signing_keys_organization_id"))
    op.drop_table("hub_signing_keys")
    with op.batch_alter_table("signing_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_certificates_status"))
        batch_op.drop_index(batch_op.f("ix_signing_certificates_organization_id"))
    op.drop_table("signing_certificates")
    with op.batch_alter_table("trust_anchors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trust_anchors_kind"))
    op.drop_table("trust_anchors")
