"""The sizes the API documents, under the server's own name; defined once in `hms_mgmt.limits`, which
the SDK's channels and batches use too.
"""

from __future__ import annotations

from hms_mgmt.limits import (
    ENVELOPE_BYTES,
    FRAME_BYTES,
    MAX_BATCH_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_RPC_MESSAGE_BYTES,
    MIB,
)

__all__ = [
    "ENVELOPE_BYTES",
    "FRAME_BYTES",
    "MAX_BATCH_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_RPC_MESSAGE_BYTES",
    "MIB",
]
