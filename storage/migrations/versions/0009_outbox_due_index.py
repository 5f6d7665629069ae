"""the outbox's due and lane indexes: a claim reads the due lane heads, not every unsent row

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Partial indexes (PostgreSQL and SQLite alike): only the unsent rows, a small part of the table.
# The conditions are written as storage.models writes them, and as storage.outbox.claim queries them
# (constants, not parameters), so that both planners prove a query may use them.
DUE = "state = 'queued'"
LANE = "state IN ('queued', 'sending') AND channel <> 'staff'"
STAFF_LANE = "state IN ('queued', 'sending') AND channel = 'staff'"


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def upgrade() -> None:
    op.create_index(
        "ix_notification_due", "notification", ["channel", "next_attempt_at", "id"], **_where(DUE)
    )
    op.create_index("ix_notification_lane", "notification", ["channel", "user_key", "id"], **_where(LANE))
    op.create_index(
        "ix_notification_staff_lane",
        "notification",
        ["user_key", "application_id", "id"],
        **_where(STAFF_LANE),
    )


def downgrade() -> None:
    op.drop_index("ix_notification_staff_lane", table_name="notification")
    op.drop_index("ix_notification_lane", table_name="notification")
    op.drop_index("ix_notification_due", table_name="notification")
