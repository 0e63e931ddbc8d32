"""Optional bearer-token authentication for every RPC except the health service (load
balancers probe it without credentials)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc import aio

HEALTH_SERVICE_PREFIX = "/grpc.health.v1.Health/"


def token_is_valid(metadata: Sequence[tuple[str, str | bytes]], tokens: Sequence[str]) -> bool:
    """Whether `metadata` carries 'authorization: Bearer T' with T one of `tokens`."""
    for key, value in metadata:
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            offered = value.removeprefix("Bearer ").encode()
            # compare_digest against every token: timing does not reveal which one is close.
            matches = [hmac.compare_digest(offered, token.encode()) for token in tokens]
            return any(matches)
    return False


class BearerTokenInterceptor(aio.ServerInterceptor):
    """Refuses calls without a valid token with UNAUTHENTICATED, and logs each refusal with
    the method (never the token offered)."""

    def __init__(self, tokens: Sequence[str], logger: logging.Logger) -> None:
        self._tokens = tuple(tokens)
        self._logger = logger

        async def refuse(_request: object, context: aio.ServicerContext) -> None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or invalid token: send the metadata 'authorization: Bearer <token>'",
            )

        async def refuse_stream(_requests: object, context: aio.ServicerContext) -> None:
            await refuse(None, context)

        self._refusals = {
            (False, False): grpc.unary_unary_rpc_method_handler(refuse),
            (False, True): grpc.unary_stream_rpc_method_handler(refuse),
            (True, False): grpc.stream_unary_rpc_method_handler(refuse_stream),
            (True, True): grpc.stream_stream_rpc_method_handler(refuse_stream),
        }

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if handler_call_details.method.startswith(HEALTH_SERVICE_PREFIX) or token_is_valid(
            handler_call_details.invocation_metadata, self._tokens
        ):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED
            return handler
        offered = any(key == "authorization" for key, _ in handler_call_details.invocation_metadata)
        self._logger.warning(
            "refused %s: principal unknown (%s token)",
            handler_call_details.method,
            "invalid" if offered else "no",
        )
        return self._refusals[(handler.request_streaming, handler.response_streaming)]
