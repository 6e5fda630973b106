"""What one client connection may hold and how long it may live: HTTP/2 streams, keepalive,
idle and age limits, as gRPC server options.

gRPC's defaults suit a trusted network: any number of streams per connection, no idle or age
limit, and a request whose length prefix promises bytes that never come holds its stream and
memory until the connection dies. A server open to clients it does not control bounds all of
them; these defaults keep every legitimate use (hundreds of streams on one channel, hour-long
connections, LLM streams of minutes) well inside the limits.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# The fastest a client may send keepalive pings; faster ones earn a GOAWAY (gRPC's "ping
# strikes"). gRPC's own client default is no pings; 10 s admits every sane client setting.
MIN_CLIENT_PING_INTERVAL_S = 10.0


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits; an age or idle time of 0 turns that limit off."""

    max_concurrent_streams: int = 256
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    max_connection_idle_s: float = 1800.0
    max_connection_age_s: float = 7200.0
    max_connection_age_grace_s: float = 600.0

    def __post_init__(self) -> None:
        if self.max_concurrent_streams < 1:
            raise ValueError("--max-concurrent-streams must be at least 1")
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"--{f.name.replace('_', '-')} must not be negative")
        if self.keepalive_time_s <= 0 or self.keepalive_timeout_s <= 0:
            raise ValueError("--keepalive-time-s and --keepalive-timeout-s must be positive")

    def grpc_options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            # The server pings a connection this often to find clients that went away
            # without closing it, and drops it when a ping is not answered in time.
            ("grpc.keepalive_time_ms", _ms(self.keepalive_time_s)),
            ("grpc.keepalive_timeout_ms", _ms(self.keepalive_timeout_s)),
            ("grpc.http2.min_ping_interval_without_data_ms", _ms(MIN_CLIENT_PING_INTERVAL_S)),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        if self.max_connection_idle_s:
            options.append(("grpc.max_connection_idle_ms", _ms(self.max_connection_idle_s)))
        if self.max_connection_age_s:
            # A connection this old is asked to go (GOAWAY, clients reconnect at once); its
            # calls in flight get the grace to finish, then the connection is closed. This is
            # also what ends a request stalled half-sent.
            options += [
                ("grpc.max_connection_age_ms", _ms(self.max_connection_age_s)),
                ("grpc.max_connection_age_grace_ms", _ms(self.max_connection_age_grace_s)),
            ]
        return options
