"""rule flags carry the organization that owns the flagged record's adapter instance

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

import json

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Where the flagging rules recorded the instance that landed the flagged record (adapters/rules.py); a flagged
# test result's instance is found by its key in rule_test_results.
_INSTANCE_KEYS = ("resultInstanceId", "instanceId")


def upgrade() -> None:
    with op.batch_alter_table("rule_flags", schema=None) as batch_op:
        batch_op.add_column(sa.Column("organization_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True))
        batch_op.create_index(batch_op.f("ix_rule_flags_organization_id"), ["organization_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_rule_flags_organization_id_organizations"), "organizations", ["organization_id"], ["id"]
        )
    # Flags raised before this revision: their owner is the owner of the instance named in their details.
    connection = op.get_bind()
    owners = dict(connection.execute(sa.text("SELECT id, organization_id FROM adapter_instances")).all())
    results = dict(connection.execute(sa.text("SELECT natural_key, instance_id FROM rule_test_results")).all())
    flags = connection.execute(sa.text("SELECT id, subject_kind, subject_key, details FROM rule_flags")).all()
    for flag_id, subject_kind, subject_key, details in flags:
        data = json.loads(details) if isinstance(details, str) else details or {}
        instance_id = next((data[key] for key in _INSTANCE_KEYS if data.get(key)), None)
        if subject_kind == "test-result":  # the result's own instance, not the excursion reading's
            instance_id = results.get(subject_key, instance_id)
        owner = owners.get(instance_id)
        if owner is not None:
            connection.execute(
                sa.text("UPDATE rule_flags SET organization_id = :owner WHERE id = :id"),
                {"owner": owner, "id": flag_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("rule_flags", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_rule_flags_organization_id_organizations"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_rule_flags_organization_id"))
        batch_op.drop_column("organization_id")
