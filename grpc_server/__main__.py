"""`python -m grpc_server`: run the AnalyzeService until SIGTERM/SIGINT (`facestream serve`)."""

import sys

from facestream.cli import main

sys.exit(main(["serve"]))
