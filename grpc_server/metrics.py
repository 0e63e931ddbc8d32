"""The gRPC server's Prometheus metrics: AnalyzeService calls by method and status code,
call latency, and gauges read from the Kafka clients when Prometheus scrapes (publishes in
flight, waiting calls, the results listener's lag, the embedded broker's bytes and budget).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from grpc import aio
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from grpc_server.broker_budget import BrokerBudget
from grpc_server.publisher import RequestPublisher
from grpc_server.results import ResultsListener

# Seconds: Submit answers in milliseconds, Analyze waits for the dataflow (up to minutes).
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _ListenerLag(Collector):
    def __init__(self, listener: ResultsListener) -> None:
        self._listener = listener

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "facestream_server_results_listener_lag_records",
            "Results on each results-topic partition the listener has not read yet.",
            labels=["partition"],
        )
        for partition, lag in sorted(self._listener.lag.items()):
            family.add_metric([str(partition)], lag)
        yield family


class _BrokerRefusals(Collector):
    def __init__(self, budget: BrokerBudget) -> None:
        self._budget = budget

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "facestream_embedded_broker_refusals",
            "Requests refused because the embedded broker's budget was reached (broker.full).",
            value=self._budget.refusals,
        )


class ServerMetrics:
    """The server's metrics, in a registry of their own (one per server, so that tests can
    run several in one process), with the process's memory, CPU and garbage collection."""

    def __init__(
        self,
        publisher: RequestPublisher,
        listener: ResultsListener,
        broker_budget: BrokerBudget | None = None,
    ) -> None:
        self.registry = registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
        self.calls = Counter(
            "facestream_server_calls_total",
            "gRPC calls finished, by service, method and status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self.call_seconds = Histogram(
            "facestream_server_call_duration_seconds",
            "Seconds from a call's start to its answer (streams: to their end), by method.",
            ["service", "method"],
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        Gauge(
            "facestream_server_publishes_in_flight",
            "Requests sent to Kafka and not yet acknowledged.",
            registry=registry,
        ).set_function(lambda: publisher.in_flight)
        Gauge(
            "facestream_server_result_waiters",
            "Calls waiting for results (Analyze, WatchResults, WatchStream).",
            registry=registry,
        ).set_function(lambda: listener.waiter_count)
        registry.register(_ListenerLag(listener))
        if broker_budget is not None:
            Gauge(
                "facestream_embedded_broker_bytes",
                "Bytes the embedded broker holds for facestream, as the server counts them "
                "(requests and results, with the broker's cost per record).",
                registry=registry,
            ).set_function(lambda: broker_budget.held)
            Gauge(
                "facestream_embedded_broker_budget_bytes",
                "The embedded broker's budget (FACESTREAM_EMBEDDED_BROKER_BUDGET): past it new "
                "requests are refused with broker.full.",
                registry=registry,
            ).set_function(lambda: broker_budget.budget)
            registry.register(_BrokerRefusals(broker_budget))

    def finished(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count one call: `method` is gRPC's full name, /package.Service/Method."""
        service, _, name = method.strip("/").rpartition("/")
        self.calls.labels(service, name, code.name).inc()
        self.call_seconds.labels(service, name).observe(seconds)


def _final_code(context: aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with: what the handler set (abort sets it too), else OK, or
    CANCELLED / UNKNOWN when it ended by an exception without one."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc's aio context reports the raw number
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, asyncio.CancelledError | GeneratorExit):  # the client went away
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


class CountedServicer:
    """The servicer's RPC methods, each counted and timed as it ends: what
    `add_AnalyzeServiceServicer_to_server` registers when metrics are served. (Wrapping
    the methods rather than an interceptor: an aio interceptor is no cheaper and would
    also sit in front of health checks.)"""

    def __init__(
        self, servicer: object, service: ServiceDescriptor, metrics: ServerMetrics
    ) -> None:
        self._metrics = metrics
        for rpc in service.methods:
            method = f"/{service.full_name}/{rpc.name}"
            setattr(self, rpc.name, self._counted(method, getattr(servicer, rpc.name)))

    def _counted(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """`behavior` (a request or a request stream, and the context) counted when it ends,
        as the same kind of function: gRPC runs async generators and coroutines apart."""
        if inspect.isasyncgenfunction(behavior):
            return self._counted_stream(method, behavior)
        return self._counted_call(method, behavior)

    def _counted_call(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(request: Any, context: aio.ServicerContext) -> Any:
            began = time.perf_counter()
            try:
                response = await behavior(request, context)
            except BaseException as error:
                self._metrics.finished(
                    method, _final_code(context, error), time.perf_counter() - began
                )
                raise
            self._metrics.finished(method, grpc.StatusCode.OK, time.perf_counter() - began)
            return response

        return counted

    def _counted_stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
            began = time.perf_counter()
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as error:
                self._metrics.finished(
                    method, _final_code(context, error), time.perf_counter() - began
                )
                raise
            self._metrics.finished(method, grpc.StatusCode.OK, time.perf_counter() - began)

        return counted
