"""facestream core: image checks, face extraction and analysis around DeepFace, the
engines that run the models, protobuf records, Kafka configuration and administration,
the /metrics endpoint, and a Python client of the gRPC service (`client.py`).

The core never reads settings or environment variables: callers pass what it needs. It
imports nothing of `di`, `dataflow`, `grpc_server` or `apps` (tests/test_layout.py).
"""
