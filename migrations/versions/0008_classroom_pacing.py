"""What a teacher tunes: a get-ready length per quiz, pictures described in words, players removed and
put back during a game.

- quizzes.get_ready_s: how long each question shows before its answers open (0 to 5 s); empty for
  the service's default (QUESTION_GET_READY_S).
- questions.image_alt: the words a screen reader says for the question's picture (empty: none given).
- quiz_session_participants.removals: how many times the host removed the player; a host may now
  put a removed player back during the game, and the n-th removal and its undo are each a fact of
  their own (the board dedupes them by it). A removal made before counts as the first.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("quizzes", sa.Column("get_ready_s", sa.SmallInteger))
    op.create_check_constraint("get_ready_range", "quizzes", "get_ready_s BETWEEN 0 AND 5")
    op.add_column("questions", sa.Column("image_alt", sa.Text))
    op.create_check_constraint("image_alt_length", "questions", "char_length(image_alt) <= 250")
    op.add_column("quiz_session_participants",
                  sa.Column("removals", sa.Integer, nullable=False, server_default=sa.text("0")))
    op.execute("UPDATE quiz_session_participants SET removals = 1 WHERE removed_at IS NOT NULL")


def downgrade() -> None:
    op.drop_column("quiz_session_participants", "removals")
    op.drop_constraint("image_alt_length", "questions", type_="check")
    op.drop_column("questions", "image_alt")
    op.drop_constraint("get_ready_range", "quizzes", type_="check")
    op.drop_column("quizzes", "get_ready_s")
