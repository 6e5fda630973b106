"""TLS credentials for a server's port (with optional client certificates, mTLS) and for the
channels a server opens to others, such as the gateway's to its backends."""

from __future__ import annotations

import grpc

# The SDK builds client TLS the same way; one function keeps the gateway's backend channels
# and every client reading CA, certificate and key files alike.
from servemesh.channel import channel_credentials, read_pem

__all__ = ["channel_credentials", "server_credentials"]


def server_credentials(
    cert_file: str, key_file: str, client_ca_file: str | None = None
) -> grpc.ServerCredentials:
    """TLS for a server port from its certificate chain and key. With `client_ca_file`,
    every client must present a certificate that CA signed (mTLS); without, none is asked."""
    return grpc.ssl_server_credentials(
        [(read_pem(key_file, "TLS key file"), read_pem(cert_file, "TLS certificate file"))],
        root_certificates=read_pem(client_ca_file, "TLS client CA file")
        if client_ca_file
        else None,
        require_client_auth=bool(client_ca_file),
    )
