"""Settings: one frozen value built once by the CLI and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_HTTP_LISTEN = "127.0.0.1:50052"
DEFAULT_DATA_DIR = Path(".mgmt-data")


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """Knobs of the registry; defaults follow etcd and Consul."""

    default_ttl_s: float = 10.0
    min_ttl_s: float = 1.0
    max_ttl_s: float = 3600.0
    # Changes kept for Watch resume; older revisions answer OUT_OF_RANGE.
    history_size: int = 10_000
    # Idle watchers get a progress message carrying the current revision this often (etcd).
    progress_interval_s: float = 10.0
    # Per-watcher buffer; a watcher that falls this far behind is cut and must resume.
    watch_queue_size: int = 10_000
    # After a restart, every stored lease gets this long (at least its TTL) to be renewed.
    restart_grace_s: float = 0.0
    # How often the stored change log is trimmed to the `history_size` changes Watch can resume from.
    compact_interval_s: float = 60.0


@dataclass(frozen=True, slots=True)
class BusSettings:
    """Knobs of the bus; defaults follow JetStream and Pub/Sub."""

    # Newest messages kept in memory, so live subscribers never read the store: this many (trimmed
    # back to it once there are twice as many), and at most `tail_bytes` of them (`message_bytes`).
    # Readers of older messages page through the store.
    tail_size: int = 100_000
    tail_bytes: int = 256 * 1024 * 1024
    dedup_window_s: float = 120.0
    ack_wait_s: float = 30.0
    max_deliveries: int = 5
    backoff_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0)
    max_in_flight_explicit: int = 1_000
    max_in_flight_none: int = 10_000
    max_batch: int = 256
    retention_max_age_s: float = 7 * 86400.0
    retention_max_messages: int = 1_000_000
    # How often retention and the dedup window are enforced in the background.
    housekeeping_interval_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `mgmt serve` needs, from flags or environment variables."""

    listen: str = DEFAULT_LISTEN
    data_dir: Path = DEFAULT_DATA_DIR
    store_url: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    tokens_file: Path | None = None
    insecure: bool = False
    shutdown_grace_s: float = 2.0
    # The HTTP listener (/metrics, /healthz, /readyz, the console); None: none. `mgmt serve` defaults
    # to DEFAULT_HTTP_LISTEN; embedded use (tests, the demo) opts in.
    http_listen: str | None = None
    # Prometheus metrics of gRPC calls and the cores (off only to measure what they cost).
    metrics: bool = True
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    bus: BusSettings = field(default_factory=BusSettings)
    # Ended processes (and their history) are deleted this long after they ended; 0 keeps them forever.
    workflow_retention_s: float = 30 * 86400.0

    @property
    def resolved_store_url(self) -> str:
        """The store URL, defaulting to the SQLite file in the data directory."""
        return self.store_url or f"sqlite:///{(self.data_dir / 'mgmt.db').resolve()}"
