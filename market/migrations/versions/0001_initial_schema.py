"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-25 17:58:38.832761
"""
from alembic import op
import sqlalchemy as sa



revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_nonces',
    sa.Column('nonce', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('used_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('nonce')
    )
    op.create_table('auth_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_sessions_address'), ['address'], unique=False)

    op.create_table('blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('bounties',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('requester', sa.String(length=42), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('task_spec', sa.JSON(), nullable=False),
    sa.Column('acceptance', sa.JSON(), nullable=False),
    sa.Column('slots', sa.Integer(), nullable=False),
    sa.Column('reward_wei', sa.String(length=80), nullable=False),
    sa.Column('deadline', sa.Float(), nullable=False),
    sa.Column('auto_approve_s', sa.Float(), nullable=False),
    sa.Column('claim_ttl_s', sa.Float(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('funded_wei', sa.String(length=80), nullable=False),
    sa.Column('escrow_address', sa.String(length=42), nullable=False),
    sa.Column('refund_after', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('bounties', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bounties_requester'), ['requester'], unique=False)
        batch_op.create_index(batch_op.f('ix_bounties_state'), ['state'], unique=False)

    op.create_table('chain_accounts',
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('next_nonce', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('address')
    )
    op.create_table('reputations',
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('approved', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.Integer(), nullable=False),
    sa.Column('invalid', sa.Integer(), nullable=False),
    sa.Column('earned_wei', sa.String(length=80), nullable=False),
    sa.PrimaryKeyConstraint('address')
    )
    op.create_table('rigs',
    sa.Column('address', sa.String(length=42), nullable=False),
    sa.Column('owner', sa.String(length=42), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('address')
    )
    with op.batch_alter_table('rigs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rigs_owner'), ['owner'], unique=False)

    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('blob_owners',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=42), nullable=False),
    sa.ForeignKeyConstraint(['sha256'], ['blobs.sha256'], ),
    sa.PrimaryKeyConstraint('sha256', 'owner')
    )
    op.create_table('claims',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('bounty_id', sa.Integer(), nullable=False),
    sa.Column('contributor', sa.String(length=42), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['bounty_id'], ['bounties.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.create_index('ix_claims_bounty_state', ['bounty_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_claims_contributor'), ['contributor'], unique=False)

    op.create_table('submissions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('claim_id', sa.Integer(), nullable=False),
    sa.Column('bounty_id', sa.Integer(), nullable=False),
    sa.Column('contributor', sa.String(length=42), nullable=False),
    sa.Column('rig', sa.String(length=42), nullable=False),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=140), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('checks', sa.JSON(), nullable=False),
    sa.Column('fingerprint', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('reviewed_by', sa.String(length=42), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('reviewed_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['bounty_id'], ['bounties.id'], ),
    sa.ForeignKeyConstraint(['claim_id'], ['claims.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submissions_bounty_id'), ['bounty_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_submissions_claim_id'), ['claim_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_submissions_contributor'), ['contributor'], unique=False)
        batch_op.create_index(batch_op.f('ix_submissions_manifest_sha256'), ['manifest_sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_submissions_state'), ['state'], unique=False)

    op.create_table('payouts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('payout_id', sa.String(length=66), nullable=False),
    sa.Column('bounty_id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('payee', sa.String(length=42), nullable=False),
    sa.Column('amount_wei', sa.String(length=80), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('sender', sa.String(length=42), nullable=False),
    sa.Column('tx_nonce', sa.Integer(), nullable=False),
    sa.Column('raw_tx', sa.Text(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('block_number', sa.Integer(), nullable=False),
    sa.Column('block_hash', sa.String(length=66), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['bounty_id'], ['bounties.id'], ),
    sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('payout_id'),
    sa.UniqueConstraint('submission_id')
    )
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payouts_bounty_id'), ['bounty_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payouts_payee'), ['payee'], unique=False)
        batch_op.create_index(batch_op.f('ix_payouts_state'), ['state'], unique=False)

    op.create_table('submission_files',
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], ),
    sa.PrimaryKeyConstraint('submission_id', 'path')
    )
    with op.batch_alter_table('submission_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_submission_files_sha256'), ['sha256'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('submission_files', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submission_files_sha256'))

    op.drop_table('submission_files')
    with op.batch_alter_table('payouts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payouts_state'))
        batch_op.drop_index(batch_op.f('ix_payouts_payee'))
        batch_op.drop_index(batch_op.f('ix_payouts_bounty_id'))

    op.drop_table('payouts')
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_submissions_state'))
        batch_op.drop_index(batch_op.f('ix_submissions_manifest_sha256'))
        batch_op.drop_index(batch_op.f('ix_submissions_contributor'))
        batch_op.drop_index(batch_op.f('ix_submissions_claim_id'))
        batch_op.drop_index(batch_op.f('ix_submissions_bounty_id'))

    op.drop_table('submissions')
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_claims_contributor'))
        batch_op.drop_index('ix_claims_bounty_state')

    op.drop_table('claims')
    op.drop_table('blob_owners')
    op.drop_table('settings')
    with op.batch_alter_table('rigs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rigs_owner'))

    op.drop_table('rigs')
    op.drop_table('reputations')
    op.drop_table('chain_accounts')
    with op.batch_alter_table('bounties', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bounties_state'))
        batch_op.drop_index(batch_op.f('ix_bounties_requester'))

    op.drop_table('bounties')
    op.drop_table('blobs')
    with op.batch_alter_table('auth_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_sessions_address'))

    op.drop_table('auth_sessions')
    op.drop_table('auth_nonces')
