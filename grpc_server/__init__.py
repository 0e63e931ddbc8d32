"""The gRPC front: AnalyzeService server, its Kafka publisher and results listener, and a
Python client. Run it with `python -m grpc_server` or `facestream serve`."""
