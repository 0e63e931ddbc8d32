"""The AnalyzeService servicer: thin. Authorization, validation, admission, the embedded
broker's budget, publishing and result matching live in `auth`, `validation`, `admission`,
`broker_budget`, `pipeline` and `results`; this maps them to RPCs and status codes. Each
call runs as its principal: requests are recorded with it, and results go back to it alone
(or to a principal allowed to watch all). Frames of video streams come over SubmitStream,
checked in order per call (`frame_sequences`), and go back in order through WatchStream
(`stream_results`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from facestream.requests import RequestLimits
from facestream.v1 import analyze_service_pb2, analyze_service_pb2_grpc, records_pb2
from grpc_server.auth import CallAuthorization
from grpc_server.errors import RequestRejectedError, refuse
from grpc_server.frame_sequences import StreamSequences
from grpc_server.gallery_requests import check_identify
from grpc_server.pipeline import Pipeline, PipelineServicer, time_left
from grpc_server.principals import READ, SUBMIT, WATCH_ALL, Principal
from grpc_server.validation import (
    check_not_frame,
    check_submission,
    check_watch_ids,
    check_watched_stream,
    refused_frame,
)

# Requests one SubmitStream keeps unanswered before it stops reading further requests;
# gRPC's own flow control then holds the client back.
STREAM_WINDOW = 64
SERVICE = analyze_service_pb2.DESCRIPTOR.services_by_name["AnalyzeService"]
SERVICE_NAME = SERVICE.full_name
# What SubmitStream's reader hands its replier: a reply being made, a refusal that ends
# the call, or None at the end of the requests.
StreamItem = asyncio.Task[analyze_service_pb2.SubmitReply] | RequestRejectedError | None


class AnalyzeServicer(PipelineServicer, analyze_service_pb2_grpc.AnalyzeServiceServicer):
    service_name = SERVICE_NAME

    def __init__(
        self,
        limits: RequestLimits,
        pipeline: Pipeline,
        logger: logging.Logger,
        stream_gap_timeout: float,
    ) -> None:
        super().__init__(pipeline)
        self._limits = limits
        self._listener = pipeline.listener
        self._admission = pipeline.admission
        self._logger = logger
        self._result_timeout = pipeline.result_timeout
        self._stream_gap_timeout = stream_gap_timeout

    async def Submit(
        self, request: analyze_service_pb2.SubmitRequest, context: aio.ServicerContext
    ) -> analyze_service_pb2.SubmitReply:
        principal = (await self._authorize(context, "Submit", SUBMIT)).principal
        try:
            with self._admission.call(principal.name):
                check_not_frame(request)
                request_id = await self._accept(request, context, principal)
        except RequestRejectedError as rejected:
            await refuse(context, rejected)
        return analyze_service_pb2.SubmitReply(request_id=request_id)

    async def Analyze(
        self, request: analyze_service_pb2.SubmitRequest, context: aio.ServicerContext
    ) -> records_pb2.AnalysisResult:
        authorization = await self._authorize(context, "Analyze", SUBMIT, READ)
        principal = authorization.principal
        try:
            with (
                self._admission.call(principal.name),
                self._admission.hold_image(principal.name, len(request.image)),
            ):
                check_not_frame(request)
                check_identify(request, principal, self._limits)
                submission = check_submission(request, self._limits, principal.name)
                request_id = submission.request_id
                with self._listener.waiter([request_id], principal.name) as waiter:
                    # A recent result of this principal's request with this id (a retry)
                    # is answered without publishing again.
                    if not waiter.has_result:
                        await self._pipeline.publish(submission, context)
                    try:
                        return await self._pipeline.next_result(
                            waiter, authorization, time_left(context, self._result_timeout)
                        )
                    except TimeoutError:
                        raise RequestRejectedError(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            "result.timeout",
                            f"request {request_id} was accepted but its result was "
                            "not ready in time; get it with WatchResults",
                            request_id,
                        ) from None
        except RequestRejectedError as rejected:
            await refuse(context, rejected)

    async def SubmitStream(
        self,
        request_iterator: AsyncIterator[analyze_service_pb2.SubmitRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[analyze_service_pb2.SubmitReply]:
        authorization = await self._authorize(context, "SubmitStream", SUBMIT)
        # Requests are read and published while earlier replies are sent: each reply goes
        # out as soon as its request is acknowledged (or refused), in request order.
        replies: asyncio.Queue[StreamItem] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)
        reader = asyncio.create_task(
            self._read_stream(request_iterator, context, authorization, replies, window)
        )
        try:
            with self._admission.call(authorization.principal.name):
                while (item := await replies.get()) is not None:
                    if isinstance(item, RequestRejectedError):
                        raise item
                    yield await item
                    window.release()
        except RequestRejectedError as rejected:
            await refuse(context, rejected)
        finally:
            reader.cancel()
            while not replies.empty():
                if isinstance(item := replies.get_nowait(), asyncio.Task):
                    item.cancel()

    async def WatchResults(
        self, request: analyze_service_pb2.WatchRequest, context: aio.ServicerContext
    ) -> AsyncIterator[records_pb2.AnalysisResult]:
        scope = READ if request.request_ids else WATCH_ALL
        authorization = await self._authorize(context, "WatchResults", scope)
        principal = authorization.principal
        # Only a principal allowed to watch everything sees others' results, and only as
        # long as it keeps that scope.
        owner = None if principal.allows(WATCH_ALL) else principal.name
        if owner is None:
            await authorization.require(WATCH_ALL)
        try:
            request_ids = check_watch_ids(list(request.request_ids)) or None
            with (
                self._admission.call(principal.name),
                self._admission.watch(principal.name),
                self._listener.waiter(request_ids, owner) as waiter,
            ):
                # Results for given ids are awaited until the deadline (or the result
                # timeout): an id whose result is gone from memory must not hang the call.
                # A watch of everything runs until the client ends it or loses its scope.
                deadline = (
                    None
                    if request_ids is None
                    else time.monotonic() + time_left(context, self._result_timeout)
                )
                while not waiter.complete:
                    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                    try:
                        yield await self._pipeline.next_result(waiter, authorization, wait)
                    except TimeoutError:
                        raise RequestRejectedError(
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            "result.timeout",
                            f"{waiter.missing} of {len(request_ids or ())} results did not "
                            "arrive in time; results older than the server's memory are on "
                            "the results topic",
                        ) from None
        except RequestRejectedError as rejected:
            await refuse(context, rejected)

    async def WatchStream(
        self, request: analyze_service_pb2.WatchStreamRequest, context: aio.ServicerContext
    ) -> AsyncIterator[records_pb2.AnalysisResult]:
        authorization = await self._authorize(context, "WatchStream", READ)
        principal = authorization.principal
        try:
            stream_id = check_watched_stream(request.stream_id)
            # Owner-only, whatever the caller's scopes: stream ids are per principal.
            with (
                self._admission.call(principal.name),
                self._admission.watch(principal.name),
                self._listener.stream_waiter(
                    stream_id, principal.name, request.from_sequence, self._stream_gap_timeout
                ) as waiter,
            ):
                while not waiter.complete:
                    yield await self._pipeline.next_result(waiter, authorization, None)
        except RequestRejectedError as rejected:
            await refuse(context, rejected)

    async def _read_stream(
        self,
        request_iterator: AsyncIterator[analyze_service_pb2.SubmitRequest],
        context: aio.ServicerContext,
        authorization: CallAuthorization,
        replies: asyncio.Queue[StreamItem],
        window: asyncio.Semaphore,
    ) -> None:
        """SubmitStream's reader: start each request's publish and queue its reply, at most
        STREAM_WINDOW unanswered (then it stops reading, and gRPC's flow control holds the
        client back); a refusal of the principal, or the end, ends the queue. Frames are
        checked in order here; their publishes start in that order, so each stream reaches
        its partition in sequence."""
        sequences = StreamSequences()
        try:
            async for request in request_iterator:
                refusal = authorization.refusal()
                if refusal is not None:
                    replies.put_nowait(refusal)
                    return
                replies.put_nowait(
                    asyncio.create_task(
                        self._submit_one(request, context, authorization.principal, sequences)
                    )
                )
                await window.acquire()
        except Exception as error:  # the request stream broke: end the call, typed
            self._logger.warning("SubmitStream: reading requests failed: %r", error)
            replies.put_nowait(
                RequestRejectedError(
                    grpc.StatusCode.INTERNAL,
                    "stream.read_failed",
                    "the server could not read the next request of this stream; the "
                    "replies sent so far stand",
                )
            )
            return
        replies.put_nowait(None)

    async def _submit_one(
        self,
        request: analyze_service_pb2.SubmitRequest,
        context: aio.ServicerContext,
        principal: Principal,
        sequences: StreamSequences,
    ) -> analyze_service_pb2.SubmitReply:
        """One SubmitStream reply: the request's id, and the error if it was refused."""
        try:
            if request.HasField("frame"):
                # Before the first await: frames are admitted in the order they came.
                sequences.admit(request.frame)
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
        """Check and publish; the request id. RequestRejectedError says why not. A frame
        that fails its checks is published as a refusal (no image), so that its stream still
        gets a result for it."""
        with self._admission.hold_image(principal.name, len(request.image)):
            try:
                check_identify(request, principal, self._limits)
                submission = check_submission(request, self._limits, principal.name)
            except RequestRejectedError as rejected:
                if not request.HasField("frame"):
                    raise
                stand_in = refused_frame(request, principal.name, rejected)
                await self._pipeline.publish(stand_in, context)
                rejected.request_id = stand_in.request_id
                raise
            await self._pipeline.publish(submission, context)
        return submission.request_id
