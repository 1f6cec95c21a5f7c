"""Redis key names of a session; every one carries the session id as a hash tag (Redis Cluster) and
starts with REDIS_KEY_PREFIX (app/core/redis_keys.py)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from app.core import redis_keys


@dataclass(frozen=True)
class SessionKeys:
    session_id: str

    @classmethod
    def of(cls, session_id: uuid.UUID | str) -> SessionKeys:
        return cls(str(session_id))

    def _key(self, kind: str) -> str:
        return redis_keys.key(f"{kind}:{{{self.session_id}}}")

    @property
    def board(self) -> str:
        return self._key("lb")

    @property
    def applied(self) -> str:
        return self._key("applied")

    @property
    def meta(self) -> str:
        return self._key("meta")

    @property
    def room(self) -> str:
        return self._key("room")

    @property
    def names(self) -> str:
        return self._key("names")

    @property
    def recent(self) -> str:
        return self._key("recent")

    @property
    def pending(self) -> str:
        """Answers to the open question, held until it closes (participant -> "points:at_ms")."""
        return self._key("pending")

    @property
    def results(self) -> str:
        """The answers to the last question opened, for the room's close frames (participant ->
        "choice:correct:points:streak"; lua/session_board_lib.lua says when it is complete)."""
        return self._key("results")

    @property
    def presence(self) -> str:
        """When each player was last heard on a room socket (participant -> Unix ms; heartbeat.py)."""
        return self._key("presence")

    def sockets(self, user_id) -> str:
        """The open room sockets of one user in this session (connection id -> opened at)."""
        return redis_keys.key(f"sockets:{{{self.session_id}}}:{user_id}")

    @property
    def apply_keys(self) -> list[str]:
        """The KEYS of every apply script, in the one order they all assert (lua/session_board_lib.lua)."""
        return [self.board, self.applied, self.meta, self.room, self.names, self.recent, self.pending,
                self.results]

    def rebuilding(self, token: str) -> tuple[str, str, str]:
        """Temporary board, applied set and held answers of one rebuild, in the session's slot."""
        return (f"{self.board}:rebuild:{token}", f"{self.applied}:rebuild:{token}",
                f"{self.pending}:rebuild:{token}")
