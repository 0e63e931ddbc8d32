"""How `make bench` runs: sections in order, each saved as soon as it is measured, none able
to take the run with it.

- Before the first section, the weight files of every chosen section are checked. Where the
  weights folder holds no real file, the missing ones are made synthetic (the cache the tests
  and the demo use); next to real weights nothing is written: the sections whose files are
  missing are named at once and skipped.
- A section that raises is reported with its error (and its targets as not met); the next
  one runs. Sections measured in this process's own models run in a child process of their
  own (apps.processes.WorkerProcess): its memory is returned when it is done, and even a
  crash of the child is only that section's failure.
- The sections that measure running systems share them (bench.systems.RunningSystems); they
  are stopped before the first in-process section, so that nothing else runs beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from di import Settings
from facestream.models import (
    ACTION_MODELS,
    WeightState,
    check_weights,
    synthesize_weights,
)
from facestream.worker_process import WorkerProcess


class SectionSkippedError(RuntimeError):
    """A section cannot run in this run (a weight file, or a figure it reads, is missing)."""


class FailPointError(RuntimeError):
    """Raised at the start of the section named by --fail-in, to test the run's reports."""


@dataclass
class Inputs:
    """What every section reads: the settings, the images, the options and the figures of the
    sections before it. Picklable, for sections measured in a child process."""

    settings: Settings
    images: list[bytes]
    args: argparse.Namespace
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    """One part of the bench: `measure` gives its figures (a dict, saved under `name`).
    `actions`: the models whose weights it loads. `systems`: it measures the running systems
    (called with them, in this process); otherwise it runs in a child process."""

    name: str
    measure: Callable[..., dict[str, Any]]
    actions: tuple[str, ...] = ()
    systems: bool = False


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class WeightsPlan:
    """What the chosen sections need from the weights folder: the actions to make synthetic,
    and the sections to skip with the files they miss."""

    synthesize: tuple[str, ...]
    skipped: dict[str, list[str]]


def plan_weights(weights_dir: Path, sections: Sequence[Section]) -> WeightsPlan:
    """Check the files of every action the `sections` load. Missing ones are made synthetic
    when the folder holds no real weights; next to real ones, the sections that need a
    missing file are skipped instead (synthetic files are never mixed with real ones)."""
    needed = sorted({action for section in sections for action in section.actions})
    states = {
        status.component.removeprefix("action "): status.state
        for status in check_weights(weights_dir, needed, ())
    }
    every_action = check_weights(weights_dir, tuple(ACTION_MODELS), ())
    real_here = any(status.state is WeightState.REAL for status in every_action)
    bad = [action for action, state in states.items() if state not in _USABLE]
    if not real_here:
        return WeightsPlan(tuple(bad), {})
    skipped = {
        section.name: [ACTION_MODELS[a].weight_file for a in section.actions if a in bad]
        for section in sections
        if any(action in bad for action in section.actions)
    }
    return WeightsPlan((), skipped)


_USABLE = (WeightState.REAL, WeightState.SYNTHETIC)


def prepare_weights(weights_dir: Path, sections: Sequence[Section]) -> dict[str, list[str]]:
    """Make the missing synthetic files the `sections` need (see plan_weights) and say so;
    return the sections to skip, each with the files it misses, said at once."""
    plan = plan_weights(weights_dir, sections)
    if plan.synthesize:
        say(f"bench: writing SYNTHETIC weights for {', '.join(plan.synthesize)} in {weights_dir}")
        synthesize_weights(weights_dir, plan.synthesize)
    for name, files in plan.skipped.items():
        say(
            f"bench: skipping {name}: {', '.join(files)} missing in {weights_dir}, beside real "
            "weights (`facestream models download` fetches them; --only chooses sections)"
        )
    return plan.skipped


class Run:
    """One bench run: the chosen sections in order, the report saved after each to `out`."""

    def __init__(self, inputs: Inputs, out: Path, fail_in: str | None = None) -> None:
        self.inputs = inputs
        self.report = inputs.report
        self.out = out
        self.fail_in = fail_in
        self.report.setdefault("sections", {})

    def save(self) -> None:
        """Write the report so far, ratios included (a crash keeps what was done)."""
        from bench.targets import ratios

        self.report["ratios"] = ratios(self.report)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "latest.json").write_text(json.dumps(self.report, indent=2) + "\n")

    def record(self, name: str, status: str, started: float, error: str = "") -> None:
        entry: dict[str, Any] = {"status": status, "seconds": round(time.monotonic() - started)}
        if error:
            entry["error"] = error
        self.report["sections"][name] = entry
        self.save()

    def section(
        self, section: Section, systems: Any = None, skipped_for: Sequence[str] = ()
    ) -> None:
        """Measure one section and record it: its figures, or its error."""
        started = time.monotonic()
        if skipped_for:
            self.record(section.name, "skipped", started, f"missing: {', '.join(skipped_for)}")
            return
        say(f"bench: section {section.name}")
        try:
            if self.fail_in == section.name:
                raise FailPointError(f"fail point: --fail-in {section.name}")
            if section.systems:
                figures = section.measure(self.inputs, systems)
            else:
                figures = in_child(section.measure, self.inputs)
        except SectionSkippedError as reason:
            self.record(section.name, "skipped", started, str(reason))
            say(f"bench: {section.name} skipped: {reason}")
            return
        except (Exception, SystemExit) as error:  # a failed section is a finding: go on
            text = "".join(traceback.format_exception(error))[-6000:]
            self.record(section.name, "failed", started, text)
            say(f"bench: {section.name} FAILED:\n{text}")
            return
        self.report[section.name] = figures
        self.record(section.name, "ok", started)

    @property
    def failed(self) -> list[str]:
        return [n for n, s in self.report["sections"].items() if s["status"] != "ok"]


def in_child(measure: Callable[[Inputs], dict[str, Any]], inputs: Inputs) -> dict[str, Any]:
    """`measure(inputs)` in a new Python process, which exits when it is done."""
    with WorkerProcess("bench-section") as worker:
        return worker.call(measure, inputs)
