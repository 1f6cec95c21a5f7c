"""What a classroom needs: question kinds and images, a get-ready moment before answers open, locked
rooms and removed players, unique nicknames and rejoin codes, a quiz library.

- questions.kind: `choice` (one right answer among 2 to 6), `true_false` (two choices, True and
  False) or `poll` (no right answer, no points); image_id names an uploaded picture.
- question_images: pictures stored in PostgreSQL (every web process serves them), by content type.
- quiz_sessions.locked (no one joins), question_shown_at (the question shows from then; its answers
  open at question_opened_at).
- quiz_session_participants: rejoin_code (the player's own code to take their place back on another
  device), removed_at (removed by the host: off the board, and cannot join again); a nickname is
  unique within a session, trimmed and case-insensitive.
- quizzes.updated_at, archived_at and replaced_by, for the library: an edit of a played quiz makes a
  new one and archives the played one, whose sessions keep their questions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("quizzes", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False,
                                       server_default=sa.func.now()))
    # An edit of a quiz that was played makes a new quiz; the played one is archived (its sessions and
    # their reports keep their questions) and points at its replacement, whose deletion takes it along.
    op.add_column("quizzes", sa.Column("archived_at", sa.DateTime(timezone=True)))
    op.add_column("quizzes", sa.Column("replaced_by", UUID(as_uuid=True),
                                       sa.ForeignKey("quizzes.id", ondelete="CASCADE")))

    op.create_table(
        "question_images",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("owner_id", UUID(as_uuid=True), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("content_type", sa.Text, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_question_images_owner_id", "question_images", ["owner_id"])

    op.add_column("questions", sa.Column("kind", sa.Text, nullable=False, server_default="choice"))
    op.add_column("questions", sa.Column("image_id", UUID(as_uuid=True),
                                         sa.ForeignKey("question_images.id", ondelete="SET NULL")))
    op.alter_column("questions", "correct_choice", nullable=True)
    op.drop_constraint(op.f("ck_questions_correct_choice_in_choices"), "questions", type_="check")
    op.create_check_constraint(
        "kind_known", "questions", "kind IN ('choice', 'true_false', 'poll')")
    op.create_check_constraint(
        "correct_choice_in_choices", "questions",
        "(kind = 'poll' AND correct_choice IS NULL AND points = 0) OR "
        "(kind <> 'poll' AND correct_choice >= 0 AND correct_choice < jsonb_array_length(choices))")

    op.add_column("quiz_sessions", sa.Column("locked", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("quiz_sessions", sa.Column("question_shown_at", sa.DateTime(timezone=True)))

    op.add_column("quiz_session_participants", sa.Column("rejoin_code", sa.String(8)))
    op.add_column("quiz_session_participants", sa.Column("removed_at", sa.DateTime(timezone=True)))
    # Sessions that already hold the same nickname twice keep both players: the later ones get a suffix.
    op.execute("""
        UPDATE quiz_session_participants p SET nickname = left(p.nickname, 26) || ' (' || d.n || ')'
        FROM (SELECT id, row_number() OVER (PARTITION BY quiz_session_id, lower(nickname)
                                            ORDER BY joined_at, id) AS n
              FROM quiz_session_participants) d
        WHERE d.id = p.id AND d.n > 1""")
    op.create_index("uq_quiz_session_participants_nickname", "quiz_session_participants",
                    ["quiz_session_id", sa.text("lower(nickname)")], unique=True)
    # A quiz's history (replaced_by) and the retention's scan for games past their time.
    op.create_index("ix_quizzes_replaced_by", "quizzes", ["replaced_by"])
    op.create_index("ix_quiz_sessions_retained_from", "quiz_sessions",
                    [sa.text("coalesce(ended_at, question_shown_at, created_at)")])


def downgrade() -> None:
    op.drop_index("ix_quiz_sessions_retained_from", "quiz_sessions")
    op.drop_index("ix_quizzes_replaced_by", "quizzes")
    op.drop_index("uq_quiz_session_participants_nickname", "quiz_session_participants")
    op.drop_column("quiz_session_participants", "removed_at")
    op.drop_column("quiz_session_participants", "rejoin_code")
    op.drop_column("quiz_sessions", "question_shown_at")
    op.drop_column("quiz_sessions", "locked")
    op.drop_constraint(op.f("ck_questions_correct_choice_in_choices"), "questions", type_="check")
    op.drop_constraint(op.f("ck_questions_kind_known"), "questions", type_="check")
    op.execute("DELETE FROM questions WHERE kind = 'poll'")
    op.alter_column("questions", "correct_choice", nullable=False)
    op.create_check_constraint("correct_choice_in_choices", "questions",
                               "correct_choice >= 0 AND correct_choice < jsonb_array_length(choices)")
    op.drop_column("questions", "image_id")
    op.drop_column("questions", "kind")
    op.drop_index("ix_question_images_owner_id", "question_images")
    op.drop_table("question_images")
    op.drop_column("quizzes", "replaced_by")
    op.drop_column("quizzes", "archived_at")
    op.drop_column("quizzes", "updated_at")
