"""measurement score nullable for item 9 alone

Revision ID: 0518bb5be085
Revises: 5f3abc9ef688
Create Date: 2026-12-04 13:53:56.634885

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0518bb5be085'
down_revision: Union[str, Sequence[str], None] = '5f3abc9ef688'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """measurement.score may be NULL: a PHQ-9 item 9 answered on its own (item-level 44260-8
    Observation) is a measurement row that counts for safety_risk only. Batch mode: SQLite has no
    ALTER COLUMN."""
    with op.batch_alter_table("measurement") as batch:
        batch.alter_column("score", existing_type=sa.INTEGER(), nullable=True)


def downgrade() -> None:
    """The older schema cannot hold item-9-only rows: they are dropped (the Observations stay)."""
    op.execute("DELETE FROM measurement WHERE score IS NULL")
    with op.batch_alter_table("measurement") as batch:
        batch.alter_column("score", existing_type=sa.INTEGER(), nullable=False)
