"""Every documented request limit, in one place: the numbers the .proto comments promise.

The cores validate against these; tests check each at the limit and one past it. Sizes are bytes,
lengths are characters, durations are seconds.
"""

from __future__ import annotations

from control_plane.limits import MAX_BATCH_BYTES as WIRE_BATCH_BYTES

KIB = 1024
MIB = 1024 * KIB

# -- shared ------------------------------------------------------------------------------------
NAME_MAX = 128  # service, instance, signal, durable consumer and definition names
MAX_PAGE, DEFAULT_PAGE = 1_000, 100  # page_size of every listing
# JSON values (process input, signal payloads, task outputs, details) nest objects and lists at most
# this deep. Each level costs protobuf three message levels inside a Struct, and responses wrap the
# value a few levels deeper (history details, step status), so this keeps every stored value inside
# protobuf's 100-level parse limit wherever it is sent back (the common document-store limit, too).
MAX_JSON_DEPTH = 20

# -- registry ----------------------------------------------------------------------------------
MAX_ADDRESS = 300
MAX_TAGS, MAX_TAG_LEN = 32, 64
MAX_METADATA, MAX_METADATA_KEY, MAX_METADATA_VALUE = 64, 128, 1024
MAX_VERSION_LEN = 64
MAX_PROBE_SERVICE_NAME = 256
PROBE_INTERVAL_S = (0.1, 3600.0)
PROBE_THRESHOLD = (1, 10)
PROBE_DEREGISTER_AFTER_S = (1.0, 7 * 86400.0)

# -- bus ---------------------------------------------------------------------------------------
MAX_SUBJECT_LEN, MAX_TOKENS = 255, 16
MAX_DATA = MIB
MAX_HEADERS, MAX_HEADER_KEY, MAX_HEADER_VALUE = 64, 128, 4096
MAX_CONTENT_TYPE, MAX_MESSAGE_ID = 128, 128
MAX_BATCH_MESSAGES, MAX_BATCH_BYTES = 1_000, WIRE_BATCH_BYTES  # one number for the server and the SDK
MAX_ACK_ITEMS = 10_000
MAX_ACK_DELAY_S = 12 * 3600.0
MAX_ACK_REASON = 1024
ACK_WAIT_S = (1.0, 12 * 3600.0)
MAX_DELIVERIES = 100
MAX_IN_FLIGHT_EXPLICIT, MAX_IN_FLIGHT_NONE = 10_000, 100_000
MAX_BATCH = 1_000
MAX_BACKOFF_ENTRIES, MAX_BACKOFF_S = 16, 3600.0
# Retention ages beyond a century protect nothing and come back unrepresentable (a Duration's range
# ends at 10,000 years, and a float of seconds rounds there).
MAX_RETENTION_AGE_S = 100 * 365 * 86400.0

# -- workflow ----------------------------------------------------------------------------------
MAX_SOURCE = MIB  # definition text, UTF-8
MAX_BUSINESS_KEY = 256
MAX_INPUT = MIB  # process input, as compact UTF-8 JSON
MAX_SIGNAL_PAYLOAD = MIB
MAX_SIGNAL_ID = 128
MAX_CANCEL_REASON = 1024
MAX_OUTPUT = MIB  # task output
MAX_OUTBOX = 100
MAX_DETAILS = 64 * KIB  # failure and heartbeat details
MAX_ERROR_CODE, MAX_ERROR_MESSAGE = 128, 4096
MAX_TASK_TYPES = 256
MAX_TASKS_IN_FLIGHT = 10_000
MAX_REPORT_EVENTS = 1_000  # per ReportTaskEvents frame or ReportTaskEventBatches request
