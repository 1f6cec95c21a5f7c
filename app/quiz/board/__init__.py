"""A quiz session's board in Redis: applying its events, reading pages, rebuilding it from PostgreSQL.

PostgreSQL is the truth; a session's board, dedupe set and room stream in Redis are derived
from it and can be rebuilt at any time (`rebuild.rebuild_session_board`).
"""
