"""What a replica learns of the others sharing its store: their notifications, and who leads.

One replica (the leader) runs the work that must not run twice: lease expiry, health probes,
compaction, retention, and reclaiming what a dead replica held. On PostgreSQL the leader is whoever
holds a session advisory lock; when its process dies the server drops the session and another
replica takes the lock within a poll interval. Each replica also LISTENs for the NOTIFY every commit
of another replica sends, so its in-memory views follow the database within milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import threading
import uuid
from collections.abc import Callable

import psycopg

logger = logging.getLogger(__name__)

Callback = Callable[[str], None]
TOPICS = ("registry", "bus", "tasks", "definitions", "mesh")
# The application_name prefix of each replica's listening session: the leader asks pg_stat_activity
# which replicas are alive by it (a killed replica's session ends with its process).
APPLICATION_PREFIX = "hms-mgmt:"
_LEADER_LOCK = 0x686D736C  # "hmsl"
_POLL_S = 0.5
# The listener tries a new session this often while the database is unreachable.
_RECONNECT_S = 1.0
# The longest pause after errors that are not the database's, in a row.
_MAX_RETRY_S = 5.0


def new_replica_id() -> str:
    """A fresh identity per process start: a restarted replica is a new one."""
    return uuid.uuid4().hex[:16]


class LocalCluster:
    """A store no other process shares (SQLite): this replica always leads and nothing arrives."""

    shared = False

    def __init__(self) -> None:
        self.replica_id = new_replica_id()
        self.leader = True

    def start(self) -> None:
        """Nothing to follow: no other replica writes."""

    def subscribe(self, topic: str, callback: Callback) -> None:
        """Nothing to follow: no other replica writes."""

    def on_leadership(self, callback: Callable[[bool], None]) -> None:
        """Leadership never changes."""

    def close(self) -> None:
        """Nothing to release."""


class PostgresCluster:
    """LISTENs on one connection of its own (in a thread) and takes the leader lock when it is free."""

    shared = True

    def __init__(self, url: str, loop: asyncio.AbstractEventLoop) -> None:
        self.replica_id = new_replica_id()
        self.leader = False
        self._loop = loop
        self._callbacks: dict[str, list[Callback]] = {}
        self._leadership: list[Callable[[bool], None]] = []
        self._stop = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        self._url = url
        self._conn = self._connect()
        self._thread = threading.Thread(target=self._run, name="store-listener", daemon=True)

    def start(self) -> None:
        """Begin listening (after the cores subscribed, so that nothing is dropped)."""
        self._thread.start()

    def subscribe(self, topic: str, callback: Callback) -> None:
        """Call `callback(payload)` on the event loop for each notification of another replica."""
        self._callbacks.setdefault(topic, []).append(callback)

    def on_leadership(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(is_leader)` on the event loop whenever leadership is won or lost."""
        self._leadership.append(callback)

    def close(self) -> None:
        """Stop listening and end the session (which releases the leader lock at once)."""
        self._stop.set()
        os.write(self._wake_write, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._conn.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _drain(self) -> None:
        for note in self._conn.notifies(timeout=0):
            self._deliver(note.channel, note.payload)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._campaign()
                self._drain()  # what arrived while the campaign's query ran
                ready, _, _ = select.select([self._conn.fileno(), self._wake_read], [], [], _POLL_S)
                if self._wake_read in ready:
                    return  # closing: answer at once instead of after a poll interval
                self._drain()
                failures = 0
            except psycopg.Error as exc:
                if self._stop.is_set():
                    return
                # The session is gone (database restarted?): so is the lock. Followers keep their views;
                # the periodic catch-up of each core closes any gap once a new session listens again.
                logger.error("store listener lost its connection: %s", exc)
                self._set_leader(False)
                self._reconnect()
            except Exception:
                if self._stop.is_set() or self._loop.is_closed():
                    return
                # Not the database: carry on (a listener thread that ended would leave this replica deaf).
                failures += 1
                delay = min(_MAX_RETRY_S, 0.05 * 2.0 ** min(failures, 10))
                logger.exception("store listener failed; carrying on in %.2f s", delay)
                if self._stop.wait(delay):
                    return

    def _campaign(self) -> None:
        if not self.leader:
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (_LEADER_LOCK,)).fetchone()
            if row is not None and row[0]:
                self._set_leader(True)

    def _set_leader(self, leader: bool) -> None:
        if leader == self.leader:
            return
        self.leader = leader
        logger.info("replica %s %s leadership", self.replica_id, "took" if leader else "lost")
        for callback in self._leadership:
            self._loop.call_soon_threadsafe(callback, leader)

    def _deliver(self, channel: str, payload: str) -> None:
        sender, _, value = payload.partition(" ")
        if sender == self.replica_id:
            return  # our own commits are already applied in memory
        for callback in self._callbacks.get(channel.removeprefix("hms_"), ()):
            self._loop.call_soon_threadsafe(callback, value)

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(
            self._url,
            autocommit=True,
            connect_timeout=5,
            application_name=APPLICATION_PREFIX + self.replica_id,
            # A replica whose machine vanishes must look dead within seconds: the server-side keepalives end
            # this session (and with it the leader lock, and this replica's claim to its tasks); the
            # client-side ones notice a vanished database.
            options="-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3",
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
        )
        for topic in TOPICS:
            conn.execute(f"LISTEN hms_{topic}")
        return conn

    def _reconnect(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._conn.close()
        while not self._stop.wait(_RECONNECT_S):
            try:
                self._conn = self._connect()
            except Exception as exc:
                logger.debug("store listener cannot reconnect yet: %s", exc)
                continue
            logger.info("store listener reconnected")
            # Whatever was committed meanwhile: make every follower look.
            for callbacks in self._callbacks.values():
                for callback in callbacks:
                    self._loop.call_soon_threadsafe(callback, "")
            return
