"""followers: a chat follows an open application on its account instead of filing the same problem

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 05:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_application_account_status", "application", ["account_id", "status"])
    op.create_table(
        "application_follower",
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("user_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("lang", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["application_id"], ["application.id"]),
        sa.PrimaryKeyConstraint("application_id", "channel", "user_key"),
    )


def downgrade() -> None:
    op.drop_table("application_follower")
    op.drop_index("ix_application_account_status", table_name="application")
