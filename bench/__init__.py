"""The benchmark: `make bench` (bench/suite.py) and the scripts it runs."""

from apps.launch import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "bench" / "results"
