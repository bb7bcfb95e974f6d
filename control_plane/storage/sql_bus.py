"""The Bus's SQL: run on a connection by a backend (in its writer or reader), never by the core."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import asdict
from itertools import chain, repeat
from typing import Any

from control_plane.models import (
    NO_HEADERS,
    AckMode,
    AppendResult,
    ConsumerConfig,
    OutgoingMessage,
    Position,
    RetentionPolicy,
    StoredConsumer,
    StoredMessage,
    SubjectStats,
)
from control_plane.models.bus import (
    OUTGOING_CONTENT_TYPE,
    OUTGOING_DATA,
    OUTGOING_HEADERS,
    OUTGOING_MESSAGE_ID,
    OUTGOING_SUBJECT,
    OUTGOING_SUBJECT_SEQUENCE,
    STORED_DATA,
    STORED_MESSAGE_ID,
    STORED_PUBLISHED_AT,
    STORED_SEQUENCE,
    STORED_SUBJECT,
    STORED_SUBJECT_SEQUENCE,
)
from control_plane.storage.connection import Connection, write_rows

_MESSAGE_COLUMNS = (
    "sequence, subject_sequence, subject, data, headers, content_type, message_id, published_at"
)


def _message(row: tuple[Any, ...]) -> StoredMessage:
    seq, subject_seq, subject, data, headers, content_type, message_id, at = row
    return StoredMessage(
        int(seq),
        int(subject_seq),
        subject,
        bytes(data),
        json.loads(headers) if headers != "{}" else NO_HEADERS,
        content_type,
        message_id,
        float(at),
    )


def append(conn: Connection, batch: list[OutgoingMessage], now: float, dedup_window_s: float) -> AppendResult:
    """Store a batch atomically: dedup by message id, assign log and subject sequences, insert."""
    if batch and not any(m.message_id for m in batch):
        # Nothing to deduplicate (no message has an id, as a workflow transition's events): all are new.
        return AppendResult(_insert(conn, batch, now))
    known: dict[str, Position] = {}
    ids = [m.message_id for m in batch if m.message_id]
    if ids and dedup_window_s > 0:
        marks = ",".join("?" * len(ids))
        for message_id, seq, subject_seq, at in conn.execute(
            f"SELECT message_id, sequence, subject_sequence, published_at FROM bus_dedup "
            f"WHERE message_id IN ({marks}) AND published_at > ?",
            (*ids, now - dedup_window_s),
        ):
            known[message_id] = Position(int(seq), int(subject_seq), float(at))
    # Which messages are new (a repeated id within the batch is a duplicate too, of the first one).
    fresh: list[OutgoingMessage] = []
    duplicates: list[int] = []
    claimed: set[str] = set()
    for index, message in enumerate(batch):
        if message.message_id and (message.message_id in known or message.message_id in claimed):
            duplicates.append(index)
            continue
        if message.message_id:
            claimed.add(message.message_id)
        fresh.append(message)
    stored = _insert(conn, fresh, now) if fresh else []
    for new in stored:
        if new.message_id:
            known[new.message_id] = Position(new.sequence, new.subject_sequence, now)
    return AppendResult(stored, duplicates, [known[batch[index].message_id] for index in duplicates])


_SUBJECTS_PER_STATEMENT = 500
_BUS_SEQUENCE = "bus_sequence"


def _allocate(conn: Connection, count: int) -> tuple[int, bool]:
    """Take `count` log sequences; returns the last one, and whether the counter is still to be moved
    on by `count` (by the statement that inserts the messages: see `_BUMP`).

    The first take of a transaction reads the counter back. The row is then locked by this
    transaction until it ends, so on a connection that keeps `known` values (PostgreSQL, where each
    read back is a round trip inside the writer's pipeline) later takes only add to it, in the same
    statement as their insert.
    """
    known: dict[str, int] | None = getattr(conn, "known", None)
    last = known.get(_BUS_SEQUENCE) if known is not None else None
    bump = last is not None
    if last is None:
        (last,) = conn.execute(
            "UPDATE counters SET value = value + ? WHERE name = 'bus_sequence' RETURNING value", (count,)
        ).fetchone()
    else:
        last += count
    if known is not None:
        known[_BUS_SEQUENCE] = int(last)
    return int(last), bump


# (PostgreSQL, whose data-modifying WITH runs whether or not the statement reads it.) Moves the log
# counter on in the statement that inserts the messages numbered by it: one statement less per publish.
_BUMP = "WITH bump AS (UPDATE counters SET value = value + ? WHERE name = 'bus_sequence') "

_INSERT_MESSAGES = f"INSERT INTO bus_messages ({_MESSAGE_COLUMNS}) VALUES "
_MESSAGE_WIDTH = 8


def insert_rows(
    conn: Connection, insert: str, values: list[Any], width: int, lead: tuple[str, list[Any]] | None = None
) -> None:
    """Append rows of `width` values, flattened in `values`, with `insert` ("INSERT INTO t (...) VALUES ").

    A connection that can defer them (PostgreSQL: `PostgresConnection.defer_rows`) sends them later in
    the transaction, together with the other callers' rows of the same table: a commit of 40
    transitions then inserts its history in a few statements rather than 40. Others insert them now
    (see `write_rows`). `lead`: a WITH clause moving a counter on by its one parameter, a count.
    """
    defer: Callable[[str, list[Any], int, tuple[str, list[Any]] | None], None] | None = getattr(
        conn, "defer_rows", None
    )
    if defer is not None:
        defer(insert, values, width, lead)
    else:
        write_rows(conn, insert, values, width, lead)


@functools.lru_cache(maxsize=4096)
def _headers_json(items: tuple[tuple[str, str], ...]) -> str:
    """A message's headers as stored (a JSON object), remembered: a traced process's messages all carry its
    one `traceparent` header, and json.dumps (Python frames around the C encoder) cost ~3 us a message in
    the store's writer thread, which holds the GIL the event loop needs."""
    return json.dumps(dict(items))


# StoredMessage(...) runs a NamedTuple's Python-level __new__; tuple.__new__ builds the same value in C,
# about 0.3 us less per published message.
_new_stored = functools.partial(tuple.__new__, StoredMessage)


def _insert(conn: Connection, fresh: list[OutgoingMessage], now: float) -> list[StoredMessage]:
    last, bump = _allocate(conn, len(fresh))
    subject_next: dict[str, int] = {}
    # One statement per chunk of subjects (one round trip on a networked database), in subject order so
    # that replicas publishing at once lock subject rows in the same order.
    per_subject: dict[str, int] = {}
    # One subject that the Bus numbers (a publish batch's usual shape): no pass per message in Python.
    plain = not any(map(OUTGOING_SUBJECT_SEQUENCE, fresh)) and len(set(map(OUTGOING_SUBJECT, fresh))) == 1
    if plain:
        per_subject[fresh[0].subject] = len(fresh)
    else:
        # A plain dict: Counter's update costs more than the few messages of a transition.
        for message in fresh:
            if not message.subject_sequence:  # else numbered by its publisher (the engine): no row needed
                per_subject[message.subject] = per_subject.get(message.subject, 0) + 1
    counts = sorted(per_subject.items())
    for start in range(0, len(counts), _SUBJECTS_PER_STATEMENT):
        chunk = counts[start : start + _SUBJECTS_PER_STATEMENT]
        rows = conn.execute(
            "INSERT INTO bus_subjects (subject, last_sequence) VALUES "
            + ",".join("(?, ?)" for _ in chunk)
            + " ON CONFLICT (subject) DO UPDATE SET last_sequence = bus_subjects.last_sequence + "
            "excluded.last_sequence RETURNING subject, last_sequence",
            [value for pair in chunk for value in pair],
        ).fetchall()
        added = dict(chunk)
        for subject, subject_last in rows:
            subject_next[subject] = int(subject_last) - added[subject] + 1
    if plain and not any(map(OUTGOING_HEADERS, fresh)):
        stored = _plain_stored(fresh, last, subject_next[fresh[0].subject], now)
        bare = not any(map(OUTGOING_CONTENT_TYPE, fresh)) and not any(map(OUTGOING_MESSAGE_ID, fresh))
        if bare and not bump and getattr(conn, "defer_rows", None) is None:
            # Rows written at once (SQLite): the columns every one of them leaves empty go in as literals, so
            # 5 values a message are bound, not 8 (binding holds the GIL the event loop needs). No ids to keep.
            write_rows(conn, _INSERT_MESSAGES, _bare(stored), _BARE_WIDTH, row=_BARE_ROW)
            return stored
        # A stored message's fields are its row's columns, in order (_MESSAGE_COLUMNS), but for its headers.
        values = list(chain.from_iterable(stored))
        values[4::_MESSAGE_WIDTH] = repeat("{}", len(stored))
    else:
        stored, values = _rows(fresh, last, subject_next, now)
    insert_rows(conn, _INSERT_MESSAGES, values, _MESSAGE_WIDTH, (_BUMP, [len(fresh)]) if bump else None)
    _remember_ids(conn, stored, now)
    return stored


def _rows(
    fresh: list[OutgoingMessage], last: int, subject_next: dict[str, int], now: float
) -> tuple[list[StoredMessage], list[Any]]:
    """The stored messages and flattened rows of any batch, message by message (`subject_next`: each
    subject's next subject sequence, moved on as they are given)."""
    stored: list[StoredMessage] = []
    values: list[Any] = []  # the rows, flattened: one pass builds them with the messages
    for sequence, message in enumerate(fresh, start=last - len(fresh) + 1):
        subject, data, headers, content_type, message_id, subject_seq = message
        if not subject_seq:
            subject_seq = subject_next[subject]
            subject_next[subject] = subject_seq + 1
        stored.append(
            _new_stored((sequence, subject_seq, subject, data, headers, content_type, message_id, now))
        )
        values += (
            sequence,
            subject_seq,
            subject,
            data,
            _headers_json(tuple(headers.items())) if headers else "{}",
            content_type,
            message_id,
            now,
        )
    return stored, values


def _plain_stored(
    fresh: list[OutgoingMessage], last: int, subject_first: int, now: float
) -> list[StoredMessage]:
    """The stored messages of a batch on one subject that the Bus numbers, built by passes that run in C (a
    publish batch's usual shape; a Python pass per message cost the writer thread, which holds the GIL the
    event loop needs, about 0.5 us a message)."""
    count = len(fresh)
    return list(
        map(
            _new_stored,
            zip(
                range(last - count + 1, last + 1),
                range(subject_first, subject_first + count),
                repeat(fresh[0].subject, count),
                map(OUTGOING_DATA, fresh),
                map(OUTGOING_HEADERS, fresh),
                map(OUTGOING_CONTENT_TYPE, fresh),
                map(OUTGOING_MESSAGE_ID, fresh),
                repeat(now, count),
                strict=True,
            ),
        )
    )


def _bare(stored: list[StoredMessage]) -> list[Any]:
    """The flattened `_BARE_ROW` values of messages without headers, content type or id."""
    return list(
        chain.from_iterable(
            zip(
                map(STORED_SEQUENCE, stored),
                map(STORED_SUBJECT_SEQUENCE, stored),
                map(STORED_SUBJECT, stored),
                map(STORED_DATA, stored),
                map(STORED_PUBLISHED_AT, stored),
                strict=True,
            )
        )
    )


# A row of a message without headers, content type or id (in _MESSAGE_COLUMNS' order).
_BARE_ROW = "(?, ?, ?, ?, '{}', '', '', ?)"
_BARE_WIDTH = 5


def _remember_ids(conn: Connection, stored: list[StoredMessage], now: float) -> None:
    """Record the ids of messages that have one, for deduplication within the window."""
    if not any(map(STORED_MESSAGE_ID, stored)):
        return
    conn.executemany(
        "INSERT INTO bus_dedup (message_id, sequence, subject_sequence, published_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (message_id) DO UPDATE SET sequence = excluded.sequence, "
        "subject_sequence = excluded.subject_sequence, published_at = excluded.published_at",
        [(m.message_id, m.sequence, m.subject_sequence, now) for m in stored if m.message_id],
    )


def read(
    conn: Connection, after: int, limit: int, subject: str | None, max_data: int | None = None
) -> list[StoredMessage]:
    """Messages after a log sequence, in order; only one subject's when `subject` is given.

    With `max_data`, the page ends with the message whose data reaches `max_data` in all: the sizes
    are read first (LENGTH reads no payload), so a page of 1 MiB messages loads only what it returns.
    """
    if max_data is not None:
        where = "sequence > ?" if subject is None else "subject = ? AND sequence > ?"
        params = (after,) if subject is None else (subject, after)
        rows = conn.execute(
            f"WITH page AS (SELECT sequence, LENGTH(data) AS size FROM bus_messages WHERE {where} "
            "ORDER BY sequence LIMIT ?), "
            "sized AS (SELECT sequence, SUM(size) OVER (ORDER BY sequence) - size AS before FROM page) "
            f"SELECT {_MESSAGE_COLUMNS} FROM bus_messages "
            "WHERE sequence IN (SELECT sequence FROM sized WHERE before < ?) ORDER BY sequence",
            (*params, limit, max_data),
        )
        return [_message(r) for r in rows]
    if subject is None:
        rows = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM bus_messages WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (after, limit),
        )
    else:
        rows = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM bus_messages WHERE subject = ? AND sequence > ? ORDER BY sequence LIMIT ?",
            (subject, after, limit),
        )
    return [_message(r) for r in rows]


def read_sequences(conn: Connection, sequences: list[int]) -> list[StoredMessage]:
    """The stored messages among `sequences` (retention may have removed some), in order."""
    found: list[StoredMessage] = []
    for start in range(0, len(sequences), 500):
        chunk = sequences[start : start + 500]
        rows = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM bus_messages WHERE sequence IN ({','.join('?' * len(chunk))})",
            chunk,
        )
        found += [_message(r) for r in rows]
    return sorted(found, key=lambda m: m.sequence)


def bounds(conn: Connection) -> tuple[int, int]:
    """(oldest retained sequence or 0, last sequence ever given)."""
    (first,) = conn.execute("SELECT COALESCE(MIN(sequence), 0) FROM bus_messages").fetchone()
    (last,) = conn.execute("SELECT value FROM counters WHERE name = 'bus_sequence'").fetchone()
    return int(first), int(last)


def first_sequence_at(conn: Connection, at: float) -> int:
    """The first sequence published at or after `at` (the next sequence when none is)."""
    # Publish times grow with the sequence (one writer stamps each commit), so a binary search over the
    # primary key finds it in ~log2(n) point reads, sparing every insert a second index.
    first, last = bounds(conn)
    if first == 0:
        return last + 1  # nothing retained (never published, or all removed): only what comes next counts
    low, high = first, last + 1
    while low < high:
        middle = (low + high) // 2
        row = conn.execute(
            "SELECT sequence, published_at FROM bus_messages WHERE sequence >= ? ORDER BY sequence LIMIT 1",
            (middle,),
        ).fetchone()
        if row is None or row[1] >= at:
            high = middle
        else:
            low = int(row[0]) + 1
    return low


def _config_json(config: ConsumerConfig) -> str:
    return json.dumps(asdict(config))


def _config(text: str) -> ConsumerConfig:
    raw = json.loads(text)
    raw["ack_mode"] = AckMode(raw["ack_mode"])
    raw["backoff_s"] = tuple(raw["backoff_s"])
    return ConsumerConfig(**raw)


def load_consumers(conn: Connection) -> list[StoredConsumer]:
    """Every durable consumer with its pending deliveries."""
    pending: dict[str, dict[int, int]] = {}
    for name, seq, attempt in conn.execute("SELECT consumer, sequence, attempt FROM bus_pending"):
        pending.setdefault(name, {})[int(seq)] = int(attempt)
    return [
        StoredConsumer(_config(config), int(delivered), int(dead), pending.get(name, {}))
        for name, config, delivered, dead in conn.execute(
            "SELECT name, config, delivered_sequence, dead_lettered FROM bus_consumers ORDER BY name"
        )
    ]


def load_consumer(conn: Connection, name: str) -> StoredConsumer | None:
    """One durable consumer with its pending deliveries, or None."""
    row = conn.execute(
        "SELECT config, delivered_sequence, dead_lettered FROM bus_consumers WHERE name = ?", (name,)
    ).fetchone()
    if row is None:
        return None
    pending = {
        int(seq): int(attempt)
        for seq, attempt in conn.execute(
            "SELECT sequence, attempt FROM bus_pending WHERE consumer = ?", (name,)
        )
    }
    return StoredConsumer(_config(row[0]), int(row[1]), int(row[2]), pending)


def save_consumer(conn: Connection, config: ConsumerConfig, delivered_sequence: int) -> None:
    """Create or update a durable consumer's settings and position."""
    conn.execute(
        "INSERT INTO bus_consumers (name, config, delivered_sequence, dead_lettered) VALUES (?, ?, ?, 0) "
        "ON CONFLICT (name) DO UPDATE SET config = excluded.config, "
        "delivered_sequence = excluded.delivered_sequence",
        (config.name, _config_json(config), delivered_sequence),
    )


def delete_consumer(conn: Connection, name: str) -> bool:
    """Remove a durable consumer and its pending deliveries; False when there was none."""
    conn.execute("DELETE FROM bus_pending WHERE consumer = ?", (name,))
    return conn.execute("DELETE FROM bus_consumers WHERE name = ?", (name,)).rowcount > 0


def record_deliveries(
    conn: Connection, consumer: str, delivered_sequence: int, attempts: list[tuple[int, int]]
) -> None:
    """Advance a consumer's position and record (sequence, attempt) of deliveries awaiting an ack."""
    conn.execute(
        "UPDATE bus_consumers SET delivered_sequence = CASE WHEN delivered_sequence > ? "
        "THEN delivered_sequence ELSE ? END WHERE name = ?",
        (delivered_sequence, delivered_sequence, consumer),
    )
    if attempts:
        conn.executemany(
            "INSERT INTO bus_pending (consumer, sequence, attempt) VALUES (?, ?, ?) "
            "ON CONFLICT (consumer, sequence) DO UPDATE SET attempt = excluded.attempt",
            [(consumer, seq, attempt) for seq, attempt in attempts],
        )


def settle(conn: Connection, consumer: str, sequences: list[int]) -> None:
    """Forget acknowledged deliveries."""
    conn.executemany(
        "DELETE FROM bus_pending WHERE consumer = ? AND sequence = ?", [(consumer, s) for s in sequences]
    )


def dead_letter(
    conn: Connection, consumer: str, sequence: int, letter: OutgoingMessage, now: float
) -> StoredMessage:
    """Publish the dead letter and settle the original, in one transaction."""
    (stored,) = append(conn, [letter], now, dedup_window_s=0.0).stored
    conn.execute("DELETE FROM bus_pending WHERE consumer = ? AND sequence = ?", (consumer, sequence))
    conn.execute("UPDATE bus_consumers SET dead_lettered = dead_lettered + 1 WHERE name = ?", (consumer,))
    return stored


def subject_stats(conn: Connection) -> list[SubjectStats]:
    """Per-subject counts and ranges of what is retained, in subject order."""
    # Retention removes a subject's oldest messages first, so what is retained of a subject is always its
    # newest: the last subject sequence ever given is the highest retained one. No bus_subjects row is
    # needed (the engine's per-process subjects have none).
    rows = conn.execute(
        "SELECT subject, COUNT(*), SUM(LENGTH(data)), MIN(sequence), MAX(sequence), MAX(subject_sequence), "
        "MIN(published_at), MAX(published_at) FROM bus_messages GROUP BY subject ORDER BY subject"
    )
    return [
        SubjectStats(subject, int(n), int(size or 0), int(lo), int(hi), int(last), float(t0), float(t1))
        for subject, n, size, lo, hi, last, t0, t1 in rows
    ]


def retention(conn: Connection) -> list[RetentionPolicy]:
    """Every stored retention policy."""
    return [
        RetentionPolicy(prefix, float(age), int(count))
        for prefix, age, count in conn.execute(
            "SELECT subject_prefix, max_age_s, max_messages FROM bus_retention ORDER BY subject_prefix"
        )
    ]


def set_retention(conn: Connection, policy: RetentionPolicy | None, prefix: str) -> None:
    """Store (or, with None, remove) the policy of a prefix."""
    if policy is None:
        conn.execute("DELETE FROM bus_retention WHERE subject_prefix = ?", (prefix,))
    else:
        conn.execute(
            "INSERT INTO bus_retention (subject_prefix, max_age_s, max_messages) VALUES (?, ?, ?) "
            "ON CONFLICT (subject_prefix) DO UPDATE SET max_age_s = excluded.max_age_s, "
            "max_messages = excluded.max_messages",
            (policy.subject_prefix, policy.max_age_s, policy.max_messages),
        )


def _covered(prefix: str) -> tuple[str, list[object]]:
    """SQL condition (and its arguments) for "the subject is under this token-wise prefix"."""
    if not prefix:
        return "1 = 1", []
    return "(subject = ? OR substr(subject, 1, ?) = ?)", [prefix, len(prefix) + 1, prefix + "."]


def apply_retention(conn: Connection, policies: list[RetentionPolicy], now: float) -> int:
    """Remove what each policy no longer keeps, for the subjects it governs (no longer prefix does)."""
    removed = 0
    for policy in policies:
        prefix = policy.subject_prefix
        where, args = _covered(prefix)
        for other in policies:
            longer = other.subject_prefix
            if len(longer) > len(prefix) and (
                not prefix or longer == prefix or longer.startswith(prefix + ".")
            ):
                condition, more = _covered(longer)
                where += f" AND NOT {condition}"
                args += more
        if policy.max_age_s:
            # Publish times grow with the sequence, so "older than" is a sequence range on the key.
            cutoff = first_sequence_at(conn, now - policy.max_age_s)
            removed += conn.execute(
                f"DELETE FROM bus_messages WHERE sequence < ? AND {where}", [cutoff, *args]
            ).rowcount
        if policy.max_messages:
            # A subject keeps its newest messages (see subject_stats), so one over the limit still has
            # its last message, numbered past the limit: found without a bus_subjects row.
            over = conn.execute(
                f"SELECT subject, MAX(subject_sequence) FROM bus_messages WHERE subject_sequence > ? "
                f"AND {where} GROUP BY subject",
                [policy.max_messages, *args],
            ).fetchall()
            for subject, last in over:
                removed += conn.execute(
                    "DELETE FROM bus_messages WHERE subject = ? AND subject_sequence <= ?",
                    (subject, int(last) - policy.max_messages),
                ).rowcount
    if removed:
        # Pending deliveries of removed messages can never be redelivered: drop them too.
        conn.execute("DELETE FROM bus_pending WHERE sequence NOT IN (SELECT sequence FROM bus_messages)")
    return removed


def prune_dedup(conn: Connection, older_than: float) -> int:
    """Forget message ids outside the dedup window."""
    return conn.execute("DELETE FROM bus_dedup WHERE published_at < ?", (older_than,)).rowcount
