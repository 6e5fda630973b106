"""A backend that speaks servemesh.v1 itself (the llama predictor), with its replicas and the
retry budget their failover draws on."""

from gateway.backends.servemesh.backend import ServemeshBackend, ServemeshOptions

__all__ = ["ServemeshBackend", "ServemeshOptions"]
