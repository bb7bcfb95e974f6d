"""What the Bus counts for metrics: plain ints in dicts, cheap on the hot path, read by the edge.

Messages are counted by their subject's first token (`permit` of `permit.a17.submitted`), never by
full subject: the number of distinct first tokens counted is capped, past which they count as
`other`, so the set of counters stays bounded whatever subjects publishers invent.
"""

from __future__ import annotations

from collections.abc import Iterable

from control_plane.models import StoredMessage
from control_plane.models.bus import STORED_DATA, STORED_SUBJECT

# Distinct first tokens counted by name; later ones count under OTHER.
MAX_TOKENS = 100
OTHER = "other"
# The consumer name under which every ephemeral consumer is counted (durable names are bounded by
# configuration; ephemeral ones are made per subscription).
EPHEMERAL = "_ephemeral"


class BusStats:
    """Counters of one Bus: published and delivered messages and bytes, redeliveries, dead letters, gaps."""

    def __init__(self, max_tokens: int = MAX_TOKENS) -> None:
        self.published: dict[str, int] = {}
        self.published_bytes: dict[str, int] = {}
        self.delivered: dict[str, int] = {}
        self.delivered_bytes: dict[str, int] = {}
        # By consumer name (durable) or EPHEMERAL.
        self.redeliveries: dict[str, int] = {}
        self.dead_letters: dict[str, int] = {}
        self.gaps = 0
        self.gap_messages = 0
        self._max_tokens = max_tokens
        self._tokens: set[str] = set()

    def count_published(self, messages: Iterable[StoredMessage]) -> None:
        """Messages committed by this replica (publishes, dead letters, workflow events)."""
        self._count(messages, self.published, self.published_bytes)

    def count_delivered(self, messages: Iterable[StoredMessage]) -> None:
        """Messages handed to subscribers (each attempt counts)."""
        self._count(messages, self.delivered, self.delivered_bytes)

    def count_redelivery(self, consumer: str) -> None:
        """A delivery went out again (its ack deadline passed, or it was nacked)."""
        self.redeliveries[consumer] = self.redeliveries.get(consumer, 0) + 1

    def count_dead_letter(self, consumer: str) -> None:
        """A delivery went to the dead-letter subject."""
        self.dead_letters[consumer] = self.dead_letters.get(consumer, 0) + 1

    def count_gap(self, skipped: int) -> None:
        """An at-most-once subscriber was told it skipped `skipped` messages."""
        self.gaps += 1
        self.gap_messages += skipped

    def forget_consumer(self, consumer: str) -> None:
        """A durable consumer was deleted: its counters go with it."""
        self.redeliveries.pop(consumer, None)
        self.dead_letters.pop(consumer, None)

    def _count(
        self, messages: Iterable[StoredMessage], counts: dict[str, int], sizes: dict[str, int]
    ) -> None:
        if isinstance(messages, list) and messages:
            subjects = set(map(STORED_SUBJECT, messages))
            if len(subjects) == 1:
                # One subject (a publish batch, a frame, mostly are): counted by passes that run in C.
                token = subjects.pop().partition(".")[0]
                if token not in self._tokens:
                    token = self._admit(token)
                counts[token] = counts.get(token, 0) + len(messages)
                sizes[token] = sizes.get(token, 0) + sum(map(len, map(STORED_DATA, messages)))
                return
        # Added up per run of one subject (a batch mostly has one), then once into the counters.
        subject: str | None = None
        token = ""
        count = size = 0
        for message in messages:
            if message.subject != subject:
                if count:
                    counts[token] = counts.get(token, 0) + count
                    sizes[token] = sizes.get(token, 0) + size
                    count = size = 0
                subject = message.subject
                token = subject.partition(".")[0]
                if token not in self._tokens:
                    token = self._admit(token)
            count += 1
            size += len(message.data)
        if count:
            counts[token] = counts.get(token, 0) + count
            sizes[token] = sizes.get(token, 0) + size

    def _admit(self, token: str) -> str:
        if len(self._tokens) >= self._max_tokens:
            return OTHER
        self._tokens.add(token)
        return token


def consumer_label(name: str, durable: bool) -> str:
    """How a consumer is named in metrics: its name when durable, EPHEMERAL otherwise."""
    return name if durable else EPHEMERAL
