"""Generated protobuf and gRPC code for `facestream.v1` (from proto/; run `make proto`)."""
