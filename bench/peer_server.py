"""The peer: DeepFace's own gRPC server (deepface 0.0.103, `deepface.api.src.grpc_server`),
as DeepFace builds it in `create_server`, but bound to 127.0.0.1 only.

Usage: python -m bench.peer_server PORT WORKERS   (prints "ready" once it listens)
The analysis models load on the first Analyze call (DeepFace loads them lazily).
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from typing import Any

import grpc

# What DeepFace's error says when it finds no face in an image.
NO_FACE = "Face could not be detected"


def peer_stub(address: str) -> Any:
    """A DeepFaceService stub for the peer at `address`."""
    from deepface.api.proto import deepface_pb2_grpc

    channel = grpc.insecure_channel(
        address,
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )
    return deepface_pb2_grpc.DeepFaceServiceStub(channel)


def peer_analyze(
    stub: Any,
    image: bytes,
    actions: list[str],
    timeout: float = 600,
    detector_backend: str = "opencv",
) -> int:
    """Call the peer's Analyze with `image`; the number of faces it describes."""
    from deepface.api.proto import deepface_pb2

    try:
        reply = stub.Analyze(
            deepface_pb2.AnalyzeRequest(
                img=deepface_pb2.Image(content=image),
                actions=actions,
                detector_backend=detector_backend,
            ),
            timeout=timeout,
        )
    except grpc.RpcError as error:
        # DeepFace answers an image without a face with an error (enforce_detection): that
        # is no face, as facestream's NO_FACE (the public demo set has such photos).
        if error.code() == grpc.StatusCode.INVALID_ARGUMENT and NO_FACE in str(error.details()):
            return 0
        raise
    return len(reply.result["results"])


def main() -> None:
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    from deepface.api.proto import deepface_pb2_grpc
    from deepface.api.src import grpc_server as peer

    variables = peer.Variables()
    container = peer.Container(variables=variables)
    container.model_service.load_models_on_startup()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        options=[
            ("grpc.max_receive_message_length", peer.MAX_MESSAGE_LENGTH),
            ("grpc.max_send_message_length", peer.MAX_MESSAGE_LENGTH),
        ],
    )
    deepface_pb2_grpc.add_DeepFaceServiceServicer_to_server(
        peer.DeepFaceServicer(variables=variables, container=container), server
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    server.stop(5)


if __name__ == "__main__":
    main()
