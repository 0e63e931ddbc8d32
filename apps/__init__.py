"""facestream's applications, above the core, the dataflow and the gRPC server: the
`facestream` command (`cli.py`), the demo and its report, the local system they start
(broker -> dataflow -> server, `local_system.py`), the launch kit that starts those
processes for the demo, the benchmarks and the tests (`launch.py`), the embedded broker,
the gRPC client's command-line code, and development tools (`protogen.py`)."""
