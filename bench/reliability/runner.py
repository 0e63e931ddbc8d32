"""`make reliability`: faults and overload against the real system, with figures and targets.

`python -m bench.reliability` runs every scenario (or those `--only` names, each `--repeat`
N times) at the full sizes, prints a table of their targets and writes
bench/results/reliability.json (one entry per scenario, and a top-level `targets` list);
`--short` runs the small sizes that `make test` runs (bench/tests/test_reliability.py). It exits
1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc

from apps.processes import ChildExitedError
from bench.machine import describe_machine
from bench.reliability import (
    broker_outage,
    dataflow_kills,
    embedded_broker_full,
    enrolment_kills,
    fuzz,
    gallery_outage,
    overload,
    poison_quarantine,
    server_kills,
    soak,
    tracking_kills,
)
from bench.reliability.scenario import FULL, SHORT, Scenario, Size, at_least
from bench.system_under_test import ScenarioError
from facestream.models import (
    ensure_synthetic_weights,
    synthetic_deepface_home,
    weights_dir_of,
)

# bench/results, beside the other benchmarks' figures.
RESULTS = Path(__file__).resolve().parent.parent / "results"


# Every scenario by the name `--only` and the report use, in the order they run.
SCENARIOS: dict[str, Callable[[Path, Size], Scenario]] = {
    "dataflow_kills": dataflow_kills.run,
    "server_kills": server_kills.run,
    "broker_outage": broker_outage.run,
    "overload": overload.run,
    "fuzz": fuzz.run,
    "soak": soak.run,
    "poison_quarantine": poison_quarantine.run,
    "tracking_kills": tracking_kills.run,
    "embedded_broker_full": embedded_broker_full.run,
    "gallery_outage": gallery_outage.run,
    "enrolment_kills": enrolment_kills.run,
}


def table(scenarios: Sequence[Scenario]) -> str:
    """Every target of every scenario as a markdown table."""
    lines = ["| scenario | target | value | required | |", "|---|---|---|---|---|"]
    for scenario in scenarios:
        for target in scenario.targets:
            lines.append(
                f"| {scenario.name} | {target.name} | {target.value:g} | {target.target} | "
                f"{'met' if target.met else 'NOT met'} |"
            )
    return "\n".join(lines)


def run_scenario(name: str, home: Path, size: Size) -> Scenario:
    """Run one scenario. One that cannot run to its end (a process of the system exited
    when it should not, a wait timed out) is a finding, not the end of the suite: its error
    and the process's log become the scenario's figures and an unmet target."""
    try:
        return SCENARIOS[name](home, size)
    except (ScenarioError, TimeoutError, ChildExitedError, grpc.RpcError) as error:
        scenario = Scenario(f"{name}: stopped early")
        scenario.figures = {"error": f"{type(error).__name__}: {error}"[-6000:]}
        scenario.targets = [at_least("ran to its end without an unexpected exit", 0, 1)]
        return scenario


def main() -> int:
    """Run the chosen scenarios and report them; 1 when a target is missed."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.reliability", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--short", action="store_true", help="the small sizes of make test")
    parser.add_argument("--only", nargs="*", choices=list(SCENARIOS), help="run only these")
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="run each chosen scenario N times"
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    size = SHORT if args.short else FULL
    # Always synthetic weights, in the cache the tests use (never next to real ones): what
    # is measured here is delivery, not what the models say.
    home = synthetic_deepface_home()
    ensure_synthetic_weights(weights_dir_of(home), ["emotion"])
    report: dict[str, Any] = {
        "machine": describe_machine(),
        "size": asdict(size),
        "scenarios": {},
    }
    started = time.monotonic()
    done: list[Scenario] = []
    for name in args.only or SCENARIOS:
        for run in range(1, args.repeat + 1):
            label = name if args.repeat == 1 else f"{name}#{run}"
            print(f"reliability: {label} ...", file=sys.stderr, flush=True)
            scenario = run_scenario(name, home, size)
            if args.repeat > 1:
                scenario.name = f"{scenario.name} (run {run} of {args.repeat})"
            done.append(scenario)
            report["scenarios"][label] = {
                "name": scenario.name,
                "figures": scenario.figures,
                "targets": [asdict(t) for t in scenario.targets],
            }
            figures = json.dumps(scenario.figures)
            print(f"reliability: {label}: {figures}", file=sys.stderr, flush=True)
    report["targets"] = [asdict(t) for s in done for t in s.targets]
    report["seconds"] = round(time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"Machine: {report['machine']}; sizes: {'short' if args.short else 'full'}")
    print(table(done))
    print(f"({report['seconds'] / 60:.0f} min; bench/results/reliability.json has every figure.)")
    return 0 if all(s.met for s in done) else 1
