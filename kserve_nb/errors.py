"""The kserve-nb error tree.

Every error a user can meet derives from :class:`KServeNbError`. Each carries a message that says
what went wrong *and what to do next*. In IPython, ``_render_traceback_`` makes the notebook show
that one line instead of a traceback; the original exception stays chained (``raise … from``)
for anyone who wants it (``%tb`` or ``err.__cause__``).
"""

from __future__ import annotations

from typing import Any


class KServeNbError(Exception):
    """Root of every kserve-nb error.

    Parameters
    ----------
    message:
        One line: what happened and what to do about it.
    status:
        HTTP status code of the failing call, when there was one.
    body:
        Decoded response body of the failing call, when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body

    def __str__(self) -> str:
        return self.message

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of formatting a traceback: one red line, no stack.
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self.message}"]


class ConfigError(KServeNbError):
    """Bad configuration or bad input detected before anything was sent."""


class ValidationError(ConfigError):
    """An argument or manifest is invalid; nothing was applied."""


class ClusterError(KServeNbError):
    """The Kubernetes API refused or failed a request."""


class NotFound(ClusterError):
    """The named object does not exist."""


class Conflict(ClusterError):
    """Someone else changed the object first, or it already exists."""


class AccessDenied(ClusterError):
    """Credentials missing, expired or not allowed to do this."""


class ConnectionFailed(ClusterError):
    """The cluster or ingress could not be reached at all."""


class PredictionError(KServeNbError):
    """A prediction request failed (bad payload, model error, dead revision, no route)."""


class IngressUnreachable(ConnectionFailed, PredictionError):
    """A prediction could not reach the ingress at all (caught as either parent)."""


class RolloutError(KServeNbError):
    """A release step did not reach its intended state (revision failed, deadline passed)."""


class LocalClusterError(KServeNbError):
    """The embedded local cluster could not be started, reached or stopped."""
