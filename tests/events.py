"""Every aggregate's events in one catalogue, as the worker and `ops dlq` read them, for tests that decode or
parse an event of either."""
from __future__ import annotations

from app.core.events import EventCatalog
from app.leaderboards.events import LEADERBOARD_EVENTS
from app.quiz.events import SESSION_EVENTS

EVENTS = EventCatalog(SESSION_EVENTS, LEADERBOARD_EVENTS)
