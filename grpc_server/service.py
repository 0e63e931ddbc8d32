"""The AnalyzeService servicer: thin. Authorization, validation, admission, publishing and
result matching live in `auth`, `validation`, `admission`, `publisher` and `results`; this
maps them to RPCs and status codes. Each call runs as its principal: requests are recorded
with it, and results go back to it alone (or to a principal allowed to watch all)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from facestream.requests import RequestLimits
from facestream.v1 import analyze_service_pb2, analyze_service_pb2_grpc, records_pb2
from grpc_server.admission import Admission
from grpc_server.auth import authorize
from grpc_server.principals import READ, SUBMIT, WATCH_ALL, Authenticator, Principal
from grpc_server.publisher import PublishOverloadedError, PublishUnavailableError, RequestPublisher
from grpc_server.results import ResultsListener, WaiterOverflowError
from grpc_server.validation import (
    RequestRejectedError,
    check_submission,
    check_watch_ids,
)

# Trailing metadata key that names the request when a call fails after its id was known
# (result timeout, Kafka unavailable, overload): the client retries or watches under it.
REQUEST_ID_METADATA = "facestream-request-id"
# Publishes one SubmitStream keeps waiting on before it stops reading further requests;
# gRPC's own flow control then holds the client back.
STREAM_WINDOW = 64
# Reply this long before the client's deadline, so it gets our status, not its own timeout.
DEADLINE_MARGIN_SECONDS = 0.2
SERVICE = analyze_service_pb2.DESCRIPTOR.services_by_name["AnalyzeService"].full_name


def time_left(context: aio.ServicerContext, cap: float) -> float:
    """Seconds this call may still wait: the client's deadline less a margin, at most `cap`."""
    remaining = context.time_remaining()
    if remaining is None:
        return cap
    return max(0.0, min(cap, remaining - min(DEADLINE_MARGIN_SECONDS, remaining / 10)))


class AnalyzeServicer(analyze_service_pb2_grpc.AnalyzeServiceServicer):
    def __init__(
        self,
        limits: RequestLimits,
        publisher: RequestPublisher,
        listener: ResultsListener,
        admission: Admission,
        authenticator: Authenticator,
        logger: logging.Logger,
        ack_timeout: float,
        result_timeout: float,
    ) -> None:
        self._limits = limits
        self._publisher = publisher
        self._listener = listener
        self._admission = admission
        self._authenticator = authenticator
        self._logger = logger
        self._ack_timeout = ack_timeout
        self._result_timeout = result_timeout

    async def Submit(
        self, request: analyze_service_pb2.SubmitRequest, context: aio.ServicerContext
    ) -> analyze_service_pb2.SubmitReply:
        principal = await self._authorize(context, "Submit", SUBMIT)
        try:
            request_id = await self._accept(request, context, principal)
        except RequestRejectedError as rejected:
            await context.abort(
                rejected.status, rejected.message, trailing_metadata=_id_trailer(rejected)
            )
        return analyze_service_pb2.SubmitReply(request_id=request_id)

    async def Analyze(
        self, request: analyze_service_pb2.SubmitRequest, context: aio.ServicerContext
    ) -> records_pb2.AnalysisResult:
        principal = await self._authorize(context, "Analyze", SUBMIT, READ)
        try:
            with self._admission.hold_image(len(request.image)):
                submission = check_submission(request, self._limits, principal.name)
                request_id = submission.request_id
                with self._listener.waiter([request_id], principal.name) as waiter:
                    # A recent result of this principal's request with this id (a retry)
                    # is answered without publishing again.
                    if not waiter.has_result:
                        await self._publish(submission, context)
                    try:
                        return await waiter.next(time_left(context, self._result_timeout))
                    except TimeoutError:
                        raise RequestRejectedError(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            "result.timeout",
                            f"request {request_id} was accepted but its result was "
                            "not ready in time; get it with WatchResults",
                            request_id,
                        ) from None
        except RequestRejectedError as rejected:
            await context.abort(
                rejected.status, rejected.message, trailing_metadata=_id_trailer(rejected)
            )

    async def SubmitStream(
        self,
        request_iterator: AsyncIterator[analyze_service_pb2.SubmitRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[analyze_service_pb2.SubmitReply]:
        principal = await self._authorize(context, "SubmitStream", SUBMIT)
        pending: deque[asyncio.Task[analyze_service_pb2.SubmitReply]] = deque()
        try:
            async for request in request_iterator:
                pending.append(asyncio.create_task(self._submit_one(request, context, principal)))
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
        scope = READ if request.request_ids else WATCH_ALL
        principal = await self._authorize(context, "WatchResults", scope)
        # Only a principal allowed to watch everything sees others' results.
        owner = None if principal.allows(WATCH_ALL) else principal.name
        try:
            request_ids = check_watch_ids(list(request.request_ids)) or None
            with (
                self._admission.watch(),
                self._listener.waiter(request_ids, owner) as waiter,
            ):
                # Results for given ids are awaited until the deadline (or the result
                # timeout): an id whose result is gone from memory must not hang the call.
                deadline = (
                    None
                    if request_ids is None
                    else time.monotonic() + time_left(context, self._result_timeout)
                )
                while not waiter.complete:
                    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                    try:
                        yield await waiter.next(wait)
                    except WaiterOverflowError as overflow:
                        raise RequestRejectedError(
                            grpc.StatusCode.RESOURCE_EXHAUSTED, "watch.overflow", str(overflow)
                        ) from None
                    except TimeoutError:
                        raise RequestRejectedError(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            "result.timeout",
                            f"{waiter.missing} of {len(request_ids or ())} results did not "
                            "arrive in time; results older than the server's memory are on "
                            "the results topic",
                        ) from None
        except RequestRejectedError as rejected:
            await context.abort(rejected.status, rejected.message)

    async def _authorize(
        self, context: aio.ServicerContext, method: str, *scopes: str
    ) -> Principal:
        return await authorize(
            context, self._authenticator, f"/{SERVICE}/{method}", scopes, self._logger
        )

    async def _submit_one(
        self,
        request: analyze_service_pb2.SubmitRequest,
        context: aio.ServicerContext,
        principal: Principal,
    ) -> analyze_service_pb2.SubmitReply:
        """One SubmitStream reply: the request's id, and the error if it was refused."""
        try:
            request_id = await self._accept(request, context, principal)
        except RequestRejectedError as rejected:
            return analyze_service_pb2.SubmitReply(
                request_id=rejected.request_id or request.request_id[:128],
                error=rejected.as_error(),
            )
        return analyze_service_pb2.SubmitReply(request_id=request_id)

    async def _accept(
        self,
        request: analyze_service_pb2.SubmitRequest,
        context: aio.ServicerContext,
        principal: Principal,
    ) -> str:
        """Check and publish; the request id. RequestRejectedError says why not."""
        with self._admission.hold_image(len(request.image)):
            submission = check_submission(request, self._limits, principal.name)
            await self._publish(submission, context)
        return submission.request_id

    async def _publish(
        self, submission: records_pb2.ImageSubmitted, context: aio.ServicerContext
    ) -> None:
        request_id = submission.request_id
        if not self._publisher.reachable:
            raise RequestRejectedError(
                grpc.StatusCode.UNAVAILABLE,
                "kafka.unavailable",
                f"Kafka is not reachable; request {request_id} was not accepted. Retry with "
                "the same request_id.",
                request_id,
            )
        try:
            with self._admission.publishing(submission.principal):
                await self._publisher.publish(submission, time_left(context, self._ack_timeout))
        except RequestRejectedError as rejected:
            rejected.request_id = request_id
            raise
        except PublishOverloadedError as error:
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "server.overloaded", str(error), request_id
            ) from None
        except PublishUnavailableError as error:
            outcome = (
                "it may have been accepted: retry with the same request_id"
                if error.maybe_accepted
                else "it was not accepted. Retry with the same request_id"
            )
            raise RequestRejectedError(
                grpc.StatusCode.UNAVAILABLE,
                "kafka.unavailable",
                f"{error}; request {request_id}: {outcome}.",
                request_id,
            ) from None


def _id_trailer(rejected: RequestRejectedError) -> tuple[tuple[str, str], ...]:
    """Trailing metadata naming the request, so a client can retry or watch under that id."""
    return ((REQUEST_ID_METADATA, rejected.request_id),) if rejected.request_id else ()
