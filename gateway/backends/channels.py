"""Channels from the gateway to a backend's replicas: message sizes, reconnect pace, and TLS
from the backend's table (`tls_ca`, `tls_cert`, `tls_key`)."""

from __future__ import annotations

from typing import Any

import grpc

from runtime.server import MAX_MESSAGE_BYTES
from runtime.tls import channel_credentials

# A replica that comes back should get traffic within a couple of seconds, not after gRPC's
# default reconnect backoff, which grows to two minutes.
_RECONNECT_BACKOFF_MS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def open_channel(
    address: str, options: dict[str, Any], max_message_bytes: int = MAX_MESSAGE_BYTES
) -> grpc.aio.Channel:
    """A channel to one backend address, TLS when the backend's options name a CA or a
    client certificate."""
    channel_options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *_RECONNECT_BACKOFF_MS,
    ]
    if not any(options.get(k) for k in ("tls_ca", "tls_cert", "tls_key")):
        return grpc.aio.insecure_channel(address, options=channel_options)
    credentials = channel_credentials(
        options.get("tls_ca"), options.get("tls_cert"), options.get("tls_key")
    )
    if options.get("tls_server_name"):  # the name in the certificate, when not the address's
        channel_options.append(("grpc.ssl_target_name_override", options["tls_server_name"]))
    return grpc.aio.secure_channel(address, credentials, options=channel_options)
