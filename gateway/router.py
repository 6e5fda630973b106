"""Routes a model name to the backend that serves it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.backends import Backend
from runtime.quoting import cut, shown
from servemesh.errors import InvalidArgument, NotFound


@dataclass(frozen=True)
class Route:
    """A public model name, its backend, and the model's name at that backend."""

    model: str
    backend: Backend
    backend_model: str


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self._routes = {route.model: route for route in routes}

    @property
    def routes(self) -> list[Route]:
        """All routes, sorted by model name."""
        return [self._routes[name] for name in sorted(self._routes)]

    def route(self, model: str) -> Route:
        """The route for `model`; NotFound names the models that exist."""
        if not model:
            raise InvalidArgument(
                f"model is empty; name one of: {', '.join(sorted(self._routes))}",
                reason="MODEL_REQUIRED",
            )
        try:
            return self._routes[model]
        except KeyError:
            raise NotFound(
                f"model {shown(model)} is not served by this gateway; "
                f"the models are: {', '.join(sorted(self._routes))}",
                reason="MODEL_NOT_FOUND",
                metadata={"model": cut(model)},
            ) from None
