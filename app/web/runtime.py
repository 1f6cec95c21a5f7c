"""The composition root of the web process: its connections and shared machinery, wired once.

`create_app` (app/web/__init__.py) attaches one Runtime to the app; each piece is opened on first use.
Nothing else imports this module: handlers reach each piece through its accessor in extensions.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.accounts.hashing import PasswordHashing
from app.core.config import Config
from app.core.db import get_engine, session_factory
from app.core.errors import NotFound
from app.core.kafka import make_admin
from app.core.metrics import WebMetrics
from app.core.redis_client import Client, make_redis
from app.leaderboards.board.reads import LeaderboardReader
from app.leaderboards.service.batcher import ScoreBatcher
from app.quiz.board.reads import question_results as board_question_results
from app.quiz.board.reads import read_page
from app.quiz.service.answers import AnswerBatcher
from app.quiz.service.rooms import own_answers, previous_results, question_results, standings
from app.quiz.service.sessions import describe_session
from app.web.ratelimits import RateLimits
from app.web.rooms.hub import RoomHub
from app.web.rooms.leaderboards import LeaderboardReads
from app.web.rooms.room import LEADERBOARD_SIZE, RoomReads
from app.web.rooms.signed_in import SignedInSockets
from app.web.rooms.slots import SocketSlots


@dataclass
class Runtime:
    """The web process's connections to PostgreSQL, Redis and Kafka, and what is built on them."""

    config: Config

    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.config.database_url, pool_size=self.config.web_db_pool,
                          prepared=self.config.database_prepared_statements,
                          pool_timeout_s=self.config.web_db_pool_timeout_s)

    @cached_property
    def db_sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def redis(self) -> Client:
        # Blocking pool: thousands of sockets reconnecting at once wait for a connection instead of failing.
        return make_redis(self.config, max_connections=self.config.web_redis_pool, blocking=True)

    @cached_property
    def kafka_admin(self):
        return make_admin(self.config)

    @cached_property
    def answer_batcher(self) -> AnswerBatcher:
        return AnswerBatcher(self.engine, max_batch=self.config.answer_batch_max)

    @cached_property
    def score_batcher(self) -> ScoreBatcher:
        return ScoreBatcher(self.engine, max_batch=self.config.score_batch_max,
                            max_scores=self.config.score_commit_max_scores,
                            final_top=self.config.leaderboard_final_top)

    @cached_property
    def rate_limits(self) -> RateLimits:
        return RateLimits(self.config, self.redis)

    @cached_property
    def password_hashing(self) -> PasswordHashing:
        return PasswordHashing(waiting=self.config.password_hashes_waiting,
                               cpu_share=self.config.password_hash_cpu_share)

    @cached_property
    def board_reader(self) -> LeaderboardReader:
        return LeaderboardReader(self.engine, self.redis, period_ttl_s=self.config.leaderboard_period_ttl_s)

    @cached_property
    def metrics(self) -> WebMetrics:
        return WebMetrics()

    @cached_property
    def socket_slots(self) -> SocketSlots:
        return SocketSlots(self.redis, per_address=self.config.ws_max_per_address,
                           per_user=self.config.ws_max_per_user, lease_s=self.config.ws_slot_lease_s)

    @cached_property
    def signed_in(self) -> SignedInSockets:
        return SignedInSockets(self.room_hub, self.engine, self.redis)

    @cached_property
    def room_hub(self) -> RoomHub:
        return RoomHub(self.redis, self._room_reads(), interval_s=self.config.leaderboard_interval_ms / 1000,
                       count_interval_s=self.config.join_count_interval_ms / 1000,
                       metrics=self.metrics, board_reads=self._board_reads(),
                       ping_interval_s=self.config.ws_ping_interval_s,
                       silent_close_s=self.config.ws_silent_close_s,
                       joins_in_flight=self.config.ws_joins_in_flight, join_wait_s=self.config.ws_join_wait_s)

    def _board_reads(self) -> LeaderboardReads:
        """The live boards' reads, through the same reader as the HTTP reads (a missing period is rebuilt)."""
        reader = self.board_reader

        def standing(board_id: str, period: str, player_id: str):
            try:
                return reader.player(board_id, player_id, period=period)
            except NotFound:
                return None

        def top(board_id: str, period: str | None, n: int):
            return reader.page(board_id, period=period, offset=0, limit=n)

        return LeaderboardReads(top=top, standing=standing)

    def _room_reads(self) -> RoomReads:
        """The hub's reads: the leaderboard in Redis, the standings and the session in PostgreSQL."""

        def with_db(read):
            def call(*args):
                db = self.db_sessions()
                try:
                    return read(db, *args)
                finally:
                    db.close()
            return call

        def snapshot(db, session_id, participant_ids):
            shared = {"session": describe_session(db, session_id),
                      "leaderboard": read_page(db, self.redis, session_id, LEADERBOARD_SIZE, 0)}
            mine = standings(db, session_id, participant_ids)
            if shared["session"].get("current_question") is None:  # the lobby: no answer to show yet
                return shared, mine
            for participant_id, answer in own_answers(db, session_id, list(mine)).items():
                mine[participant_id]["answer"] = answer
            for participant_id, previous in previous_results(db, session_id, list(mine)).items():
                mine[participant_id]["previous"] = previous
            return shared, mine

        def results(session_id, question_id, participant_ids):
            # Redis keeps a closed question's answers for the room: PostgreSQL only when it cannot tell.
            found = board_question_results(self.redis, session_id, question_id, participant_ids)
            if found is not None:
                return found
            return with_db(question_results)(session_id, question_id, participant_ids)

        return RoomReads(top=with_db(lambda db, session_id, limit: read_page(db, self.redis, session_id,
                                                                             limit, 0)),
                         question_results=results, snapshot=with_db(snapshot))
