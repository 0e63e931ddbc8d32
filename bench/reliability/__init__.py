"""`make reliability`: faults and overload against the real system, with figures and targets.

Each scenario starts its own embedded broker, `bytewax.run` dataflow processes and
`python -m grpc_server` processes on 127.0.0.1 (bench/system_under_test.py), breaks
something, and counts what reached the other end; every child is stopped by its pid when
the scenario ends, whatever happened. Loads are bounded in count and time.
Weights are synthetic (made once in ~/.cache/facestream, as for the tests).

The scenarios analyse emotion only (FACESTREAM_ACTIONS=emotion) on small public images:
what is measured is delivery, typing and memory, which do not depend on which models run,
and the three VGG models would only make each scenario several times longer.

- `scenario.py`: what every scenario is made of (sizes, targets, images, the system);
- one module a scenario, its docstring saying what it breaks and what it checks:
  `dataflow_kills`, `server_kills`, `broker_outage`, `overload`, `fuzz`, `soak`,
  `poison_quarantine`, `tracking_kills`, `embedded_broker_full`, `gallery_outage`,
  `enrolment_kills` (these two with the embedding model, `scenario.RECOGNITION_ENV`);
- `runner.py`: runs them and reports (`python -m bench.reliability`, see there).
"""
