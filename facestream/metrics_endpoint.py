"""A Prometheus /metrics endpoint for one process (prometheus_client's own HTTP server).

The gRPC server and each dataflow process serve their metrics on their own port
(FACESTREAM_METRICS_PORT, FACESTREAM_DATAFLOW_METRICS_PORT); port 0 serves nothing.
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server


class MetricsEndpointError(RuntimeError):
    """The /metrics endpoint could not bind its address."""


@dataclass
class MetricsEndpoint:
    """A running /metrics endpoint; `stop()` closes its socket."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_endpoint(
    host: str, port: int, registry: CollectorRegistry, setting: str
) -> MetricsEndpoint | None:
    """Serve `registry` on http://host:port/metrics in a daemon thread; None when port is 0.

    `setting` names the variable that chose the port, for the error when it is taken."""
    if port == 0:
        return None
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        reason = "is in use" if error.errno == errno.EADDRINUSE else f"failed: {error.strerror}"
        raise MetricsEndpointError(
            f"the metrics endpoint {host}:{port} {reason}; set {setting} to a free port, "
            "or 0 for no endpoint"
        ) from error
    return MetricsEndpoint(host, server.server_port, server, thread)
