"""`python -m grpc_server`: run the AnalyzeService until SIGTERM/SIGINT (as `facestream serve`)."""

import sys

from grpc_server.server import main

sys.exit(main())
