"""application attachments: up to five photos, a voice note and a document, as a JSON list

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows registered before keep NULL here and their one photo in `photo_ref`.
    with op.batch_alter_table("application", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attachments", sa.JSON(), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35 and later drop a plain column): a copy of the table could not be swapped in,
    # as other tables refer to applications and SQLite checks foreign keys.
    with op.batch_alter_table("application", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("attachments")
