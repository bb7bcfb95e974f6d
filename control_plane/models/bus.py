"""Bus values: messages, positions, consumers, retention."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class AckMode(StrEnum):
    """Whether a consumer's deliveries must be acknowledged."""

    NONE = "none"
    EXPLICIT = "explicit"


class StartPosition(StrEnum):
    """Where a new consumer starts reading the log."""

    NEW_ONLY = "new_only"
    ALL = "all"
    FROM_SEQUENCE = "from_sequence"
    FROM_TIME = "from_time"


class OutgoingMessage(NamedTuple):
    """A message as a publisher hands it over, before it has a place in the log."""

    # NamedTuple rather than a frozen dataclass: these are built per message on the publish hot path,
    # where a frozen dataclass's __init__ (object.__setattr__ per field) cost ~8% of the server's CPU.
    subject: str
    data: bytes
    headers: Mapping[str, str] = NO_HEADERS
    content_type: str = ""
    message_id: str = ""
    # 0: the Bus numbers the message in its subject (a row per subject in the store). Set only by the
    # workflow engine, the one writer of its per-process subjects (see subjects.engine_owned): it numbers
    # them from the process record, so they need no row of their own (about six per process otherwise).
    subject_sequence: int = 0


class StoredMessage(NamedTuple):
    """A message with its place in the log (a NamedTuple for the same reason as OutgoingMessage)."""

    sequence: int
    subject_sequence: int
    subject: str
    data: bytes
    headers: Mapping[str, str]
    content_type: str
    message_id: str
    published_at: float


def message_bytes(message: OutgoingMessage | StoredMessage) -> int:
    """What a message weighs: its data, subject, headers, content type and id, in characters.

    Never more than its encoded size (which adds field tags and lengths), so a client that batches by
    encoded size always stays within a limit the server counts this way. Publish batches, Subscribe
    frames and the in-memory tail of the log are all bounded by it.
    """
    size = len(message.data) + len(message.subject) + len(message.content_type) + len(message.message_id)
    if message.headers:
        size += sum(len(key) + len(value) for key, value in message.headers.items())
    return size


# Fields of the two message tuples by index, for `map`: operator.itemgetter runs in C, where an attribute
# or a lambda per message would run Python frames (the publish and delivery hot paths read them for every
# message). In the order of the fields above.
(
    OUTGOING_SUBJECT,
    OUTGOING_DATA,
    OUTGOING_HEADERS,
    OUTGOING_CONTENT_TYPE,
    OUTGOING_MESSAGE_ID,
    OUTGOING_SUBJECT_SEQUENCE,
) = (operator.itemgetter(i) for i in range(len(OutgoingMessage._fields)))
(
    STORED_SEQUENCE,
    STORED_SUBJECT_SEQUENCE,
    STORED_SUBJECT,
    STORED_DATA,
    STORED_HEADERS,
    STORED_CONTENT_TYPE,
    STORED_MESSAGE_ID,
    STORED_PUBLISHED_AT,
) = (operator.itemgetter(i) for i in range(len(StoredMessage._fields)))


def stored_sizes(messages: Sequence[StoredMessage]) -> list[int]:
    """`message_bytes` of each of `messages`, in order.

    Messages without headers (the usual case) are weighed in a few passes of `map` that run in C,
    about a fifth of the CPU of a `message_bytes` call per message.
    """
    if any(map(STORED_HEADERS, messages)):
        return [message_bytes(m) for m in messages]
    fields = (STORED_DATA, STORED_SUBJECT, STORED_CONTENT_TYPE, STORED_MESSAGE_ID)
    return list(map(sum, zip(*(map(len, map(get, messages)) for get in fields), strict=True)))


class Position(NamedTuple):
    """Where a published message sits: log sequence, subject sequence, publish time (a NamedTuple: one
    is built per published message)."""

    sequence: int
    subject_sequence: int
    published_at: float


@dataclass(frozen=True, slots=True)
class AppendResult:
    """One atomic publish: the messages it stored, and which inputs were duplicates of earlier ones.

    Positions are derived on demand rather than built per message at commit: a publish of new messages
    (the usual case) answers with its stored messages' numbers, read straight off them.
    """

    stored: list[StoredMessage]  # the new messages, in input order
    duplicates: list[int] = field(default_factory=list)  # indexes of inputs that were duplicates
    firsts: list[Position] = field(default_factory=list)  # each duplicate's first publish, as `duplicates`

    @property
    def positions(self) -> list[Position]:
        """A position per input message, in input order (a duplicate gets the first publish's)."""
        return [Position(s, ss, at) for s, ss, at in zip(*self.numbers(), self._times(), strict=True)]

    def numbers(self) -> tuple[list[int], list[int]]:
        """Log and subject sequences of every input message, in input order."""
        sequences = list(map(STORED_SEQUENCE, self.stored))
        subject_sequences = list(map(STORED_SUBJECT_SEQUENCE, self.stored))
        for index, first in zip(self.duplicates, self.firsts, strict=True):
            sequences.insert(index, first.sequence)
            subject_sequences.insert(index, first.subject_sequence)
        return sequences, subject_sequences

    @property
    def published_at(self) -> float:
        """The latest publish time among the inputs' messages (new ones share theirs); 0 for none."""
        times = [first.published_at for first in self.firsts]
        if self.stored:
            times.append(self.stored[0].published_at)
        return max(times, default=0.0)

    def _times(self) -> list[float]:
        times = [m.published_at for m in self.stored]
        for index, first in zip(self.duplicates, self.firsts, strict=True):
            times.insert(index, first.published_at)
        return times


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    """A consumer's settings; durable ones are stored and survive restarts."""

    name: str
    durable: bool
    pattern: str
    queue_group: str
    ack_mode: AckMode
    ack_wait_s: float
    max_deliveries: int
    backoff_s: tuple[float, ...]
    dead_letter_subject: str
    created_at: float


@dataclass(frozen=True, slots=True)
class StoredConsumer:
    """A durable consumer as reloaded at start: settings, position, unsettled deliveries."""

    config: ConsumerConfig
    delivered_sequence: int
    dead_lettered: int
    pending: dict[int, int]  # sequence -> attempt


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long messages under a token-wise subject prefix are kept (0 = no limit)."""

    subject_prefix: str
    max_age_s: float
    max_messages: int


@dataclass(frozen=True, slots=True)
class SubjectStats:
    """Stored messages of one subject."""

    subject: str
    messages: int
    bytes: int
    first_sequence: int
    last_sequence: int
    last_subject_sequence: int
    first_published_at: float
    last_published_at: float
