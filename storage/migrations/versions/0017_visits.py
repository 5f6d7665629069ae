"""visits: staff propose up to three visit windows, the subscriber picks one, both are reminded

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "visit",
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("windows", sa.JSON(), nullable=False),
        sa.Column("proposed_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("proposed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("chosen", sa.Integer(), nullable=True),
        sa.Column("chosen_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("chosen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("declined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_subscriber_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminded_staff_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["application_id"], ["application.id"]),
        sa.PrimaryKeyConstraint("application_id"),
    )
    op.create_index("ix_visit_chosen_start", "visit", ["chosen_start"])


def downgrade() -> None:
    op.drop_index("ix_visit_chosen_start", table_name="visit")
    op.drop_table("visit")
