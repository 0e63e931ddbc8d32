"""The AnalyzeService servicer: thin. Validation, publishing and result matching live in
`validation`, `publisher` and `results`; this maps them to RPCs and status codes."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from facestream.v1 import analyze_service_pb2, analyze_service_pb2_grpc, records_pb2
from grpc_server.publisher import PublishOverloadedError, PublishUnavailableError, RequestPublisher
from grpc_server.results import ResultsListener, WaiterOverflowError
from grpc_server.validation import Limits, RequestRejectedError, check_submission, check_watch_ids

# Trailing metadata key that carries the request id when Analyze gives up waiting.
REQUEST_ID_METADATA = "facestream-request-id"
# Publishes one SubmitStream keeps waiting on before it stops reading further requests;
# gRPC's own flow control then holds the client back.
STREAM_WINDOW = 64
# Reply this long before the client's deadline, so it gets our status, not its own timeout.
DEADLINE_MARGIN_SECONDS = 0.2


def time_left(context: aio.ServicerContext, cap: float) -> float:
    """Seconds this call may still wait: the client's deadline less a margin, at most `cap`."""
    remaining = context.time_remaining()
    if remaining is None:
        return cap
    return max(0.0, min(cap, remaining - min(DEADLINE_MARGIN_SECONDS, remaining / 10)))


class AnalyzeServicer(analyze_service_pb2_grpc.AnalyzeServiceServicer):
    def __init__(
        self,
        limits: Limits,
        publisher: RequestPublisher,
        listener: ResultsListener,
        ack_timeout: float,
        result_timeout: float,
    ) -> None:
        self._limits = limits
        self._publisher = publisher
        self._listener = listener
        self._ack_timeout = ack_timeout
        self._result_timeout = result_timeout

    async def Submit(
        self, request: analyze_service_pb2.SubmitRequest, context: aio.ServicerContext
    ) -> analyze_service_pb2.SubmitReply:
        try:
            submission = await self._accept(request, context)
        except RequestRejectedError as rejected:
            await context.abort(rejected.status, rejected.message)
        return analyze_service_pb2.SubmitReply(request_id=submission.request_id)

    async def Analyze(
        self, request: analyze_service_pb2.SubmitRequest, context: aio.ServicerContext
    ) -> records_pb2.AnalysisResult:
        try:
            submission = check_submission(request, self._limits)
            with self._listener.waiter([submission.request_id]) as waiter:
                # A recent result for a retried id is answered without publishing again.
                if not waiter.has_result:
                    await self._publish(submission, context)
                try:
                    return await waiter.next(time_left(context, self._result_timeout))
                except TimeoutError:
                    raise RequestRejectedError(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        "result.timeout",
                        f"request {submission.request_id} was accepted but its result was "
                        "not ready in time; get it with WatchResults",
                    ) from None
        except RequestRejectedError as rejected:
            trailer = (
                ((REQUEST_ID_METADATA, submission.request_id),)
                if rejected.status is grpc.StatusCode.DEADLINE_EXCEEDED
                else ()
            )
            await context.abort(rejected.status, rejected.message, trailing_metadata=trailer)

    async def SubmitStream(
        self,
        request_iterator: AsyncIterator[analyze_service_pb2.SubmitRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[analyze_service_pb2.SubmitReply]:
        pending: deque[asyncio.Task[analyze_service_pb2.SubmitReply]] = deque()
        try:
            async for request in request_iterator:
                pending.append(asyncio.create_task(self._submit_one(request, context)))
                if len(pending) >= STREAM_WINDOW:
                    yield await pending.popleft()
            while pending:
                yield await pending.popleft()
        finally:
            for task in pending:
                task.cancel()

    async def WatchResults(
        self, request: analyze_service_pb2.WatchRequest, context: aio.ServicerContext
    ) -> AsyncIterator[records_pb2.AnalysisResult]:
        try:
            request_ids = check_watch_ids(list(request.request_ids)) or None
        except RequestRejectedError as rejected:
            await context.abort(rejected.status, rejected.message)
        with self._listener.waiter(request_ids) as waiter:
            while not waiter.complete:
                try:
                    yield await waiter.next()
                except WaiterOverflowError as overflow:
                    await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(overflow))

    async def _submit_one(
        self, request: analyze_service_pb2.SubmitRequest, context: aio.ServicerContext
    ) -> analyze_service_pb2.SubmitReply:
        try:
            submission = await self._accept(request, context)
        except RequestRejectedError as rejected:
            return analyze_service_pb2.SubmitReply(
                request_id=request.request_id[:128], error=rejected.as_error()
            )
        return analyze_service_pb2.SubmitReply(request_id=submission.request_id)

    async def _accept(
        self, request: analyze_service_pb2.SubmitRequest, context: aio.ServicerContext
    ) -> records_pb2.ImageSubmitted:
        """Check and publish; the published record. RequestRejectedError says why not."""
        submission = check_submission(request, self._limits)
        await self._publish(submission, context)
        return submission

    async def _publish(
        self, submission: records_pb2.ImageSubmitted, context: aio.ServicerContext
    ) -> None:
        if not self._publisher.reachable:
            raise RequestRejectedError(
                grpc.StatusCode.UNAVAILABLE,
                "kafka.unavailable",
                "Kafka is not reachable; the request was not accepted. Retry with the same "
                "request_id.",
            )
        try:
            await self._publisher.publish(submission, time_left(context, self._ack_timeout))
        except PublishOverloadedError as error:
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "server.overloaded", str(error)
            ) from None
        except PublishUnavailableError as error:
            raise RequestRejectedError(
                grpc.StatusCode.UNAVAILABLE,
                "kafka.unavailable",
                f"{error}; the request was not accepted. Retry with the same request_id.",
            ) from None
