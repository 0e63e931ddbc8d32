"""`python -m bench.reliability`: see bench/reliability/runner.py."""

import sys

from bench.reliability.runner import main

sys.exit(main())
