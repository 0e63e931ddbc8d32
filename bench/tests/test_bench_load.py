"""The benchmarks' load generator, with a stand-in service (the services themselves are
the real ones in `make bench`)."""

from __future__ import annotations

import threading

from bench.load import LoadRun, median_run, offer, saturate


def test_saturate_sends_every_image_each_round_with_the_concurrency_asked():
    seen: list[bytes] = []
    in_flight = 0
    most = 0
    lock = threading.Lock()
    all_in = threading.Barrier(3, timeout=10)

    def service(image: bytes) -> int:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
            seen.append(image)
        if len(seen) <= 3:
            all_in.wait()  # the first three calls meet: three were in flight at once
        with lock:
            in_flight -= 1
        return len(image)

    run = saturate(service, [b"a", b"bb", b"ccc"], rounds=2, concurrency=3)
    assert sorted(seen) == [b"a", b"a", b"bb", b"bb", b"ccc", b"ccc"]
    assert (run.images, run.faces, len(run.latencies)) == (6, 12, 6)
    assert most == 3
    assert run.faces_per_s > 0 and run.p50 <= run.p99


def test_offer_sends_the_calls_in_turn_at_the_rate():
    seen: list[bytes] = []
    run = offer(lambda image: seen.append(image) or 1, [b"x", b"y"], rate=50, calls=10)
    assert sorted(seen) == [b"x"] * 5 + [b"y"] * 5
    assert (run.images, run.faces) == (10, 10)
    # The open loop's clock: the 10th call starts 9/50 s after the first.
    assert run.seconds >= 9 / 50
    summary = median_run([run, run])
    assert summary["runs"] == 2 and summary["faces_per_run"] == 10


def test_interleaved_runs_take_turns_and_round_robin_spreads_calls(monkeypatch):
    from bench import systems

    order: list[str] = []

    def run(name: str):
        order.append(name)
        return LoadRun(1, 1, 1.0, [1.0])

    runs = systems.interleaved({"a": lambda: run("a"), "b": lambda: run("b")}, repeat=2)
    assert order == ["a", "b", "a", "b"]
    assert [len(done) for done in runs.values()] == [2, 2]

    called: list[object] = []
    from bench import systems

    monkeypatch.setattr(
        systems,
        "peer_analyze",
        lambda stub, image, actions, detector_backend: called.append((stub, detector_backend)),
    )
    robin = systems.RoundRobin(["first", "second"], "skip")
    for _ in range(4):
        robin(b"image")
    assert called == [("first", "skip"), ("second", "skip")] * 2
