"""transparency log: leaves and signed tree heads

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transparency_log_leaves",
        sa.Column("leaf_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("certificate_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("logged_at", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("lab_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("leaf_index"),
    )
    with op.batch_alter_table("transparency_log_leaves", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_transparency_log_leaves_certificate_sha256"), ["certificate_sha256"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_transparency_log_leaves_leaf_hash"), ["leaf_hash"], unique=False)

    op.create_table(
        "transparency_log_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("node_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index"),
    )
    op.create_table(
        "transparency_log_tree_heads",
        sa.Column("tree_size", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tree_size"),
    )


def downgrade() -> None:
    op.drop_table("transparency_log_tree_heads")
    op.drop_table("transparency_log_nodes")
    with op.batch_alter_table("transparency_log_leaves", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transparency_log_leaves_leaf_hash"))
        batch_op.drop_index(batch_op.f("ix_transparency_log_leaves_certificate_sha256"))
    op.drop_table("transparency_log_leaves")
