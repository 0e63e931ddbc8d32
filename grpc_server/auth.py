"""Authentication and authorization of calls: who calls (grpc_server/principals.py) and
whether its scopes allow the method.

AnalyzeService's and GalleryService's methods authorize themselves (`CallAuthorization`),
since only the
servicer sees the client certificate, and calls that stay open are checked again whenever
the credentials change. `AuthInterceptor` guards the other services (reflection). The
health service stays open: load balancers probe it without credentials. Every refusal is
logged with the principal (or "unknown") and the method, never a token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import grpc
from grpc import aio

from grpc_server.errors import RequestRejectedError, refuse
from grpc_server.principals import Authenticator, Principal

HEALTH_SERVICE_PREFIX = "/grpc.health.v1.Health/"
UNAUTHENTICATED_MESSAGE = (
    "missing or invalid credentials: send the metadata 'authorization: Bearer <token>' "
    "(or a client certificate the server knows)"
)


def certificate_names(auth_context: Mapping[str, Sequence[bytes]]) -> list[str]:
    """The names a verified client certificate proves: its CN and its DNS SANs. Other SANs
    (URI, e-mail, IP) name no principal: gRPC lists them in `x509_subject_alternative_name`
    with the DNS ones, so only its `peer_dns` property is read."""
    names = [*auth_context.get("x509_common_name", ()), *auth_context.get("peer_dns", ())]
    return [name.decode() for name in names]


def _token_state(metadata: Sequence[tuple[str, str | bytes]]) -> str:
    return "invalid" if any(key == "authorization" for key, _ in metadata) else "no"


class CallAuthorization:
    """Who one call runs as, checked when it starts and again whenever the credentials
    change while it runs: a principal removed, or stripped of a scope the call uses, loses
    its open calls too (within a credentials check or two, docs/security.md)."""

    def __init__(
        self,
        context: aio.ServicerContext,
        authenticator: Authenticator,
        method: str,
        logger: logging.Logger,
    ) -> None:
        self._context = context
        self._metadata = tuple(context.invocation_metadata() or ())
        self._certificate_names = certificate_names(context.auth_context())
        self._authenticator = authenticator
        self._method = method
        self._logger = logger
        self._scopes: list[str] = []
        self._checked_generation = -1
        self._principal: Principal | None = None

    @property
    def principal(self) -> Principal:
        assert self._principal is not None, "require() a scope first"
        return self._principal

    async def require(self, *scopes: str) -> Principal:
        """The calling principal, once it proved who it is and holds every one of `scopes`
        (and those required before); otherwise the call ends with UNAUTHENTICATED or
        PERMISSION_DENIED (naming the scope)."""
        self._scopes.extend(scopes)
        self._checked_generation = -1  # check again, with every scope so far
        refusal = self.refusal()
        if refusal is not None:
            await refuse(self._context, refusal)
        return self.principal

    def refusal(self) -> RequestRejectedError | None:
        """Why the call may not go on now (logged once), or None."""
        generation = self._authenticator.generation
        if generation == self._checked_generation:
            return None
        principal = self._authenticator.identify(self._metadata, self._certificate_names)
        known = self._principal
        if principal is None or (known is not None and principal.name != known.name):
            if known is None:
                state = _token_state(self._metadata)
                self._logger.warning(
                    "refused %s: principal unknown (%s token)", self._method, state
                )
            else:
                self._logger.warning("ended %s: principal %s revoked", self._method, known.name)
            return RequestRejectedError(
                grpc.StatusCode.UNAUTHENTICATED, "auth.unauthenticated", UNAUTHENTICATED_MESSAGE
            )
        missing = [scope for scope in self._scopes if not principal.allows(scope)]
        if missing:
            verb = "refused" if known is None else "ended"
            self._logger.warning(
                "%s %s: principal %s lacks %s", verb, self._method, principal.name, missing[0]
            )
            return RequestRejectedError(
                grpc.StatusCode.PERMISSION_DENIED,
                "auth.permission_denied",
                f"principal {principal.name!r} lacks the scope {missing[0]!r} this call needs",
            )
        self._principal = principal
        self._checked_generation = generation
        return None

    async def until_refused(self) -> RequestRejectedError:
        """Wait for the credentials to change so that this call may not go on; the reason."""
        while True:
            await self._authenticator.changed()
            refusal = self.refusal()
            if refusal is not None:
                return refusal


class AuthInterceptor(aio.ServerInterceptor):
    """Refuses calls to services other than health and the self-authorizing ones
    (AnalyzeService, GalleryService), that is reflection's, without
    a known bearer token. With client certificates required, TLS has already verified one
    issued by FACESTREAM_TLS_CLIENT_CA, and that suffices for reflection."""

    def __init__(
        self,
        authenticator: Authenticator,
        self_authorizing_prefixes: tuple[str, ...],
        certificates_required: bool,
        logger: logging.Logger,
    ) -> None:
        self._authenticator = authenticator
        self._open_prefixes = (HEALTH_SERVICE_PREFIX, *self_authorizing_prefixes)
        self._certificates_required = certificates_required
        self._logger = logger

        unauthenticated = RequestRejectedError(
            grpc.StatusCode.UNAUTHENTICATED, "auth.unauthenticated", UNAUTHENTICATED_MESSAGE
        )

        async def refuse_call(_request: object, context: aio.ServicerContext) -> None:
            await refuse(context, unauthenticated)

        async def refuse_stream(_requests: object, context: aio.ServicerContext) -> None:
            await refuse(context, unauthenticated)

        self._refusals = {
            (False, False): grpc.unary_unary_rpc_method_handler(refuse_call),
            (False, True): grpc.unary_stream_rpc_method_handler(refuse_call),
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
            or (
                # A certificate TLS verified suffices, unless the credentials file failed closed.
                self._certificates_required and self._authenticator.refusing is None
            )
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
