"""What every call that goes through the dataflow does: publish a checked request to the
requests topic (within the admission's caps and the embedded broker's budget) and wait for
its results on the results topic, for as long as the caller keeps the right to them. The
servicers (`service`, `gallery_service`) share it."""

from __future__ import annotations

import asyncio
import logging
from contextlib import nullcontext
from typing import ClassVar

import grpc
from grpc import aio

from facestream.kafka_records import submission_key
from facestream.v1 import records_pb2
from grpc_server.admission import Admission
from grpc_server.auth import CallAuthorization
from grpc_server.broker_budget import BrokerBudget
from grpc_server.errors import RequestRejectedError
from grpc_server.principals import Authenticator
from grpc_server.publisher import PublishOverloadedError, PublishUnavailableError, RequestPublisher
from grpc_server.results import ResultsListener, ResultWaiter
from grpc_server.stream_results import StreamWaiter, WaiterOverflowError

# Reply this long before the client's deadline, so it gets our status, not its own timeout.
DEADLINE_MARGIN_SECONDS = 0.2


def time_left(context: aio.ServicerContext, cap: float) -> float:
    """Seconds this call may still wait: the client's deadline less a margin, at most `cap`."""
    remaining = context.time_remaining()
    if remaining is None:
        return cap
    return max(0.0, min(cap, remaining - min(DEADLINE_MARGIN_SECONDS, remaining / 10)))


class Pipeline:
    """The requests topic in, the results topic out, for the servicers' calls."""

    def __init__(
        self,
        publisher: RequestPublisher,
        listener: ResultsListener,
        admission: Admission,
        authenticator: Authenticator,
        logger: logging.Logger,
        ack_timeout: float,
        result_timeout: float,
        broker_budget: BrokerBudget | None = None,
    ) -> None:
        self.listener = listener
        self.admission = admission
        self.result_timeout = result_timeout
        self._publisher = publisher
        self._authenticator = authenticator
        self._logger = logger
        self._ack_timeout = ack_timeout
        self._broker_budget = broker_budget

    async def authorize(
        self, context: aio.ServicerContext, service: str, method: str, *scopes: str
    ) -> CallAuthorization:
        """The authorization of a call of `service`'s `method`, once its principal holds
        every one of `scopes`; otherwise the call ends UNAUTHENTICATED or PERMISSION_DENIED."""
        authorization = CallAuthorization(
            context, self._authenticator, f"/{service}/{method}", self._logger
        )
        await authorization.require(*scopes)
        return authorization

    async def next_result(
        self,
        waiter: ResultWaiter | StreamWaiter,
        authorization: CallAuthorization,
        timeout: float | None,
    ) -> records_pb2.AnalysisResult:
        """The waiter's next result within `timeout` seconds (TimeoutError), unless the
        caller loses the right to it first, or fell too far behind (RequestRejectedError)."""
        refusal = authorization.refusal()
        if refusal is not None:
            raise refusal
        try:
            return await self._next_or_refused(waiter, authorization, timeout)
        except WaiterOverflowError as overflow:
            raise RequestRejectedError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "watch.overflow", str(overflow)
            ) from None

    async def _next_or_refused(
        self,
        waiter: ResultWaiter | StreamWaiter,
        authorization: CallAuthorization,
        timeout: float | None,
    ) -> records_pb2.AnalysisResult:
        if waiter.has_result:
            return await waiter.next()
        result = asyncio.ensure_future(waiter.next(timeout))
        refused = asyncio.ensure_future(authorization.until_refused())
        try:
            await asyncio.wait((result, refused), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (result, refused):
                task.cancel()
        if result.done() and not result.cancelled():
            return result.result()
        raise refused.result()

    async def publish(
        self, submission: records_pb2.ImageSubmitted, context: aio.ServicerContext
    ) -> None:
        """Publish a checked request, within the admission's and the broker budget's
        limits, by the call's ack deadline; RequestRejectedError (typed) when it was not
        accepted."""
        request_id = submission.request_id
        if not self._publisher.reachable:
            raise RequestRejectedError(
                grpc.StatusCode.UNAVAILABLE,
                "kafka.unavailable",
                f"Kafka is not reachable; request {request_id} was not accepted. Retry with "
                "the same request_id.",
                request_id,
            )
        budget = self._broker_budget
        size = submission.ByteSize() + len(submission_key(submission))
        try:
            with (
                self.admission.publishing(submission.principal),
                budget.writing(size, request_id) if budget else nullcontext(),
            ):
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


class PipelineServicer:
    """What the servicers share: the pipeline, and each call's authorization by method
    name within their service (`service_name`)."""

    service_name: ClassVar[str]

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def _authorize(
        self, context: aio.ServicerContext, method: str, *scopes: str
    ) -> CallAuthorization:
        return await self._pipeline.authorize(context, self.service_name, method, *scopes)
