"""facestream core: image checks, face extraction and analysis around DeepFace, protobuf
records, the embedded broker and the `facestream` CLI.

The core never reads settings or environment variables: callers pass what it needs.
"""
