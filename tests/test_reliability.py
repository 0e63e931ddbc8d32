"""The reliability scenarios of `make reliability` (bench/reliability.py) at small sizes:
dataflow and server kills, a broker outage, overload, fuzzing, a soak and a poison record,
each against the real system (embedded broker, `bytewax.run`, `python -m grpc_server`).
A scenario fails here when any of its targets is not met."""

from __future__ import annotations

import pytest

from bench.reliability import SCENARIOS, SHORT


@pytest.mark.models
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_short_scenario_meets_every_target(name, synthetic_home, capsys):
    scenario = SCENARIOS[name](synthetic_home, SHORT)
    missed = [target for target in scenario.targets if not target.met]
    assert scenario.targets, "a scenario without targets tests nothing"
    assert not missed, f"{scenario.name}: {missed}\nfigures: {scenario.figures}"
    with capsys.disabled():
        print(f"\n{scenario.name}: {scenario.figures}")
