"""The reliability scenarios of `make reliability` (bench/reliability/) at small sizes:
dataflow and server kills, a broker outage, overload, fuzzing, a soak and a poison record,
each against the real system (embedded broker, `bytewax.run`, `python -m grpc_server`).
A scenario fails here when any of its targets is not met."""

from __future__ import annotations

import pytest

from bench.reliability.runner import SCENARIOS, run_scenario
from bench.reliability.scenario import SHORT
from bench.system_under_test import ScenarioError


@pytest.mark.models
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_short_scenario_meets_every_target(name, synthetic_home, capsys):
    scenario = SCENARIOS[name](synthetic_home, SHORT)
    missed = [target for target in scenario.targets if not target.met]
    assert scenario.targets, "a scenario without targets tests nothing"
    assert not missed, f"{scenario.name}: {missed}\nfigures: {scenario.figures}"
    with capsys.disabled():
        print(f"\n{scenario.name}: {scenario.figures}")


def test_a_scenario_that_cannot_finish_is_a_finding_and_the_suite_goes_on(
    monkeypatch, synthetic_home
):
    # A stand-in scenario whose dataflow exits as one did after a restart (SIGABRT): the
    # runner reports it with the process's log instead of stopping with a traceback.
    def aborted(_home, _size):
        raise ScenarioError(
            "dataflow-1 exited with code -6:\nepoll_wait error: Bad file descriptor"
        )

    monkeypatch.setitem(SCENARIOS, "aborted", aborted)
    scenario = run_scenario("aborted", synthetic_home, SHORT)
    assert not scenario.met
    assert "dataflow-1 exited with code -6" in scenario.figures["error"]
    assert "epoll_wait error" in scenario.figures["error"]
    assert scenario.name == "aborted: stopped early"
