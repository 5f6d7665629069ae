"""a non-residential account's company name and VÖEN

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("company", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column("voen", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True))


def downgrade() -> None:
    # In place (SQLite 3.35 and later drop a plain column): a copy of the table could not be swapped in,
    # as metering points and applications refer to their accounts and SQLite checks foreign keys.
    with op.batch_alter_table("account", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("voen")
        batch_op.drop_column("company")
