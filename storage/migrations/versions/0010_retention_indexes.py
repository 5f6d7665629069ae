"""retention: processed updates and one-time-code records are pruned oldest first

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 03:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_processed_update_created_at", "processed_update", ["created_at"])
    op.create_index("ix_otp_request_created_at", "otp_request", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_otp_request_created_at", table_name="otp_request")
    op.drop_index("ix_processed_update_created_at", table_name="processed_update")
