"""The sizes the API documents (protos/hms/mgmt/v1/common.proto), in one place for the server and the SDK.

gRPC refuses messages over 4 MiB by default, on whichever side receives them; left at that, a legal
4 MiB publish batch plus its envelope, or a frame of several 1 MiB messages, failed with
RESOURCE_EXHAUSTED. Both ends instead set their send and receive limits to MAX_RPC_MESSAGE_BYTES,
derived from the largest request the contract allows.
"""

from __future__ import annotations

MIB = 1024 * 1024

# One Bus message's data; one process input, task output or signal payload, encoded.
MAX_PAYLOAD_BYTES = 1 * MIB
# The messages of one PublishStream request, or of one task completion's outbox (see `message_bytes`).
MAX_BATCH_BYTES = 4 * MIB
# A stream frame (a Subscribe response) is kept under about this; a single larger message goes alone.
FRAME_BYTES = 1 * MIB
# What surrounds the payloads in one gRPC message: field tags, tokens, ids, a message's headers.
ENVELOPE_BYTES = 1 * MIB
# The largest gRPC message either side sends or accepts: the largest request is a task completion
# (a 1 MiB output and a 4 MiB outbox), plus its envelope. 6 MiB.
MAX_RPC_MESSAGE_BYTES = MAX_PAYLOAD_BYTES + MAX_BATCH_BYTES + ENVELOPE_BYTES
