"""A grpc.health.v1 probe: exits 0 when ADDRESS answers SERVING for SERVICE, 1 otherwise.

The images' HEALTHCHECK and `meshctl` use it; Kubernetes has gRPC probes of its own.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def health_status(address: str, service: str = "", timeout: float = 1.0) -> str:
    """SERVING, NOT_SERVING, SERVICE_UNKNOWN, or the gRPC code of a failed check."""
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as error:
            return error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("address", help="HOST:PORT of a plaintext gRPC server")
    p.add_argument("service", nargs="?", default="", help='health name; "" is the server')
    p.add_argument("--timeout", type=float, default=3.0)
    a = p.parse_args()
    status = health_status(a.address, a.service, a.timeout)
    print(f"{a.address} {a.service or '(server)'}: {status}")
    sys.exit(0 if status == "SERVING" else 1)


if __name__ == "__main__":
    main()
