"""verified rigs: a rig's attested device, and the rig and device each claim is for; the near-duplicate index

Revision ID: 0004
Revises: 0003
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'fingerprint_bands',
        sa.Column('band', sa.BigInteger(), nullable=False),
        sa.Column('submission_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['submission_id'], ['submissions.id']),
        sa.PrimaryKeyConstraint('band', 'submission_id'),
    )
    with op.batch_alter_table('rigs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device', sa.String(length=66), nullable=True))
        batch_op.add_column(sa.Column('attested_by', sa.String(length=42), nullable=False, server_default=''))
        batch_op.create_unique_constraint('uq_rigs_device', ['device'])
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rig', sa.String(length=42), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('device', sa.String(length=66), nullable=True))


def downgrade() -> None:
    op.drop_table('fingerprint_bands')
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_column('device')
        batch_op.drop_column('rig')
    with op.batch_alter_table('rigs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_rigs_device', type_='unique')
        batch_op.drop_column('attested_by')
        batch_op.drop_column('device')
