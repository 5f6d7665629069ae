"""application.deadlines_from: a reopened application's deadlines count from its reopening

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: the deadlines run from the registration. An application reopened before this revision
    # gets the time of its (last) reopening, so its due date is not one long past.
    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deadlines_from", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE application SET deadlines_from = ("
        " SELECT max(status_change.created_at) FROM status_change"
        " WHERE status_change.application_id = application.id AND status_change.new_status = 'reopened')"
        " WHERE id IN (SELECT application_id FROM status_change WHERE new_status = 'reopened')"
    )


def downgrade() -> None:
    # In place (SQLite 3.35 and later drop a plain column): a copy of the table could not be swapped in,
    # as other tables refer to applications and SQLite checks foreign keys.
    with op.batch_alter_table("application", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("deadlines_from")
