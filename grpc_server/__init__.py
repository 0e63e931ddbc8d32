"""The gRPC front: AnalyzeService server, its Kafka publisher and results listener (its
Python client is `facestream.client`). Run it with `python -m grpc_server` or
`facestream serve`."""
