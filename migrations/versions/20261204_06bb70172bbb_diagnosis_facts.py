"""diagnosis facts

Revision ID: 06bb70172bbb
Revises: 522fbfcac793
Create Date: 2026-12-04 17:52:06.565677

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '06bb70172bbb'
down_revision: Union[str, Sequence[str], None] = '522fbfcac793'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Diagnosis facts (quality.md): one row per Condition coded in a quality value set. The
    Conditions already stored are read once and given theirs (dates in the clinic zone,
    COCM_TIMEZONE)."""
    op.create_table('diagnosis_fact',
    sa.Column('tenant', sa.String(length=64), nullable=False),
    sa.Column('condition_id', sa.String(length=64), nullable=False),
    sa.Column('patient_id', sa.String(length=64), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('display', sa.Text(), nullable=True),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('onset', sa.Date(), nullable=True),
    sa.Column('abatement', sa.Date(), nullable=True),
    sa.Column('clinically_active', sa.Boolean(), nullable=False),
    sa.Column('refuted', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('tenant', 'condition_id', name=op.f('pk_diagnosis_fact'))
    )
    op.create_index('ix_diagnosis_fact_patient', 'diagnosis_fact', ['tenant', 'patient_id'], unique=False)
    _backfill()


def _backfill() -> None:
    import json

    from app.quality.diagnoses import diagnosis
    from app.settings import load_settings

    zone = load_settings().zone
    bind = op.get_bind()
    resource = sa.table(
        'resource', *(sa.column(name) for name in ('tenant', 'type', 'id', 'deleted', 'patient_id', 'content'))
    )
    fact = sa.table(
        'diagnosis_fact',
        *(
            sa.column(name)
            for name in (
                'tenant', 'condition_id', 'patient_id', 'code', 'display', 'category', 'onset', 'abatement',
                'clinically_active', 'refuted',
            )
        ),
    )
    rows = bind.execute(
        sa.select(resource.c.tenant, resource.c.id, resource.c.patient_id, resource.c.content).where(
            resource.c.type == 'Condition', resource.c.deleted.is_(False), resource.c.patient_id.is_not(None)
        )
    ).all()
    for tenant, rid, patient_id, content in rows:
        found = diagnosis(json.loads(content), rid, patient_id, zone)
        if found is not None:
            bind.execute(
                sa.insert(fact).values(
                    tenant=tenant, condition_id=rid, patient_id=patient_id, code=found.code,
                    display=found.display, category=found.category, onset=found.onset,
                    abatement=found.abatement, clinically_active=found.clinically_active, refuted=found.refuted,
                )
            )


def downgrade() -> None:
    op.drop_index('ix_diagnosis_fact_patient', table_name='diagnosis_fact')
    op.drop_table('diagnosis_fact')
