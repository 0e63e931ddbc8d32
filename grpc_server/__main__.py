"""`python -m grpc_server`: run the AnalyzeService until SIGTERM/SIGINT (as `facestream serve`),
built by its composition root."""

import sys

from di.server_root import main

sys.exit(main())
