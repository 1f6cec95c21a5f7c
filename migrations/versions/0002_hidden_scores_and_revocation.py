"""Points of an open question stay hidden until it closes; access tokens can be revoked.

Answers no longer move the participant's score when they are recorded: the close of the question
adds them, so every reader of `quiz_session_participants` sees the standings as of the last closed
question. `participant_answers.streak` is the streak the answer leads to (applied at the close), and
`counted` says whether the close has added the answer yet. Rows written before this revision were
counted when they were recorded, so they start as counted; new rows start uncounted.

`users.tokens_valid_after`: a logout revokes every access token issued before it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("participant_answers", sa.Column("streak", sa.Integer, nullable=False, server_default="0"))
    op.add_column("participant_answers", sa.Column("counted", sa.Boolean, nullable=False,
                                                   server_default=sa.true()))
    op.alter_column("participant_answers", "counted", server_default=sa.false())
    op.add_column("users", sa.Column("tokens_valid_after", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("users", "tokens_valid_after")
    op.drop_column("participant_answers", "counted")
    op.drop_column("participant_answers", "streak")
