"""payouts remember the chain head at signing (event searches start there)

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signed_block', sa.Integer(), nullable=False, server_default='-1'))


def downgrade() -> None:
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_column('signed_block')
