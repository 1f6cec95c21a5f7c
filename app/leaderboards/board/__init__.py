"""A leaderboard in Redis: its keys and scripts, applying its events, reading pages, rebuilding a period
from PostgreSQL, comparing it with PostgreSQL, and the change feed of its tops."""
