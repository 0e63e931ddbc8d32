"""How a refused call ends: its gRPC status code, a message for a person, and a
`google.rpc.Status` whose `ErrorInfo` carries facestream's stable error code (`reason`), the
domain and the request id, in the `grpc-status-details-bin` trailer any gRPC client can
read (gRPC's richer error model). The request id also goes in `facestream-request-id`."""

from __future__ import annotations

from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio
from grpc_status import rpc_status

from facestream.errors import CodedError
from facestream.v1 import records_pb2

# ErrorInfo.domain: whose error codes these are.
ERROR_DOMAIN = "facestream.v1"
# Trailing metadata key that names the request when a call fails after its id was known
# (result timeout, Kafka unavailable, overload): the client retries or watches under it.
REQUEST_ID_METADATA = "facestream-request-id"


class RequestRejectedError(CodedError):
    """A request that is refused with `status`; `code` is stable, `message` for a person,
    `request_id` the id it was to run under, once known (empty before)."""

    def __init__(
        self, status: grpc.StatusCode, code: str, message: str, request_id: str = ""
    ) -> None:
        super().__init__(code, message)
        self.status = status
        self.request_id = request_id

    def as_error(self) -> records_pb2.Error:
        """The refusal as a SubmitStream reply's error."""
        return records_pb2.Error(code=self.code, message=self.message)

    def rpc_status(self) -> grpc.Status:
        """The call's final status: code, message, and the ErrorInfo trailer (with the
        request-id trailer when the id is known)."""
        info = error_details_pb2.ErrorInfo(reason=self.code, domain=ERROR_DOMAIN)
        if self.request_id:
            info.metadata["request_id"] = self.request_id
        detail = any_pb2.Any()
        detail.Pack(info)
        status = rpc_status.to_status(
            status_pb2.Status(code=self.status.value[0], message=self.message, details=[detail])
        )
        if not self.request_id:
            return status
        return _Status(
            status.code,
            status.details,
            (*status.trailing_metadata, (REQUEST_ID_METADATA, self.request_id)),
        )


Metadata = tuple[tuple[str, str | bytes], ...]


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Metadata) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


async def refuse(context: aio.ServicerContext, rejected: RequestRejectedError) -> NoReturn:
    """End the call with `rejected`'s status (gRPC's richer error model)."""
    await context.abort_with_status(rejected.rpc_status())
    raise AssertionError("abort_with_status returns by raising")  # for the type checker
