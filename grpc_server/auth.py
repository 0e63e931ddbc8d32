"""Authentication and authorization of calls: who calls (grpc_server/principals.py) and
whether its scopes allow the method.

AnalyzeService's methods authorize themselves (`authorize`), since only the servicer sees
the client certificate; `AuthInterceptor` guards the other services (reflection). The
health service stays open: load balancers probe it without credentials. Every refusal is
logged with the principal (or "unknown") and the method, never a token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import grpc
from grpc import aio

from grpc_server.principals import Authenticator, Principal

HEALTH_SERVICE_PREFIX = "/grpc.health.v1.Health/"
UNAUTHENTICATED_MESSAGE = (
    "missing or invalid credentials: send the metadata 'authorization: Bearer <token>' "
    "(or a client certificate the server knows)"
)


def certificate_names(auth_context: Mapping[str, Sequence[bytes]]) -> list[str]:
    """The names a verified client certificate carries: its CN and its SANs."""
    names = [
        *auth_context.get("x509_common_name", ()),
        *auth_context.get("x509_subject_alternative_name", ()),
    ]
    return [name.decode() for name in names]


def _token_state(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    return "invalid" if any(key == "authorization" for key, _ in metadata) else "no"


async def authorize(
    context: aio.ServicerContext,
    authenticator: Authenticator,
    method: str,
    scopes: Sequence[str],
    logger: logging.Logger,
) -> Principal:
    """The calling principal, once it proved who it is and holds every one of `scopes`;
    otherwise the call ends with UNAUTHENTICATED or PERMISSION_DENIED (naming the scope)."""
    metadata = tuple(context.invocation_metadata() or ())
    principal = authenticator.identify(metadata, certificate_names(context.auth_context()))
    if principal is None:
        logger.warning("refused %s: principal unknown (%s token)", method, _token_state(metadata))
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
    missing = [scope for scope in scopes if not principal.allows(scope)]
    if missing:
        logger.warning("refused %s: principal %s lacks %s", method, principal.name, missing[0])
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"principal {principal.name!r} lacks the scope {missing[0]!r} this call needs",
        )
    return principal


class AuthInterceptor(aio.ServerInterceptor):
    """Refuses calls to services other than health and AnalyzeService (reflection) without
    a known bearer token. With client certificates required, TLS has already verified one
    issued by FACESTREAM_TLS_CLIENT_CA, and that suffices for reflection."""

    def __init__(
        self,
        authenticator: Authenticator,
        self_authorizing_prefix: str,
        certificates_required: bool,
        logger: logging.Logger,
    ) -> None:
        self._authenticator = authenticator
        self._open_prefixes = (HEALTH_SERVICE_PREFIX, self_authorizing_prefix)
        self._certificates_required = certificates_required
        self._logger = logger

        async def refuse(_request: object, context: aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)

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
        method = handler_call_details.method
        metadata = tuple(handler_call_details.invocation_metadata or ())
        if (
            method.startswith(self._open_prefixes)
            or self._certificates_required
            or self._authenticator.identify(metadata) is not None
        ):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED
            return handler
        self._logger.warning(
            "refused %s: principal unknown (%s token)", method, _token_state(metadata)
        )
        return self._refusals[(handler.request_streaming, handler.response_streaming)]
