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
    from bench import suite

    order: list[str] = []

    def run(name: str):
        order.append(name)
        return LoadRun(1, 1, 1.0, [1.0])

    runs = suite.interleaved({"a": lambda: run("a"), "b": lambda: run("b")}, repeat=2)
    assert order == ["a", "b", "a", "b"]
    assert [len(done) for done in runs.values()] == [2, 2]

    called: list[object] = []
    monkeypatch.setattr(
        suite,
        "peer_analyze",
        lambda stub, image, actions, detector_backend: called.append((stub, detector_backend)),
    )
    robin = suite.RoundRobin(["first", "second"], "skip")
    for _ in range(4):
        robin(b"image")
    assert called == [("first", "skip"), ("second", "skip")] * 2


# What every run of one row (--only) reports besides the row.
RUN_ALONE = {
    "machine": "a CPU",
    "engine": "openvino",
    "precision": {"exact": "fp32", "fast": "int8"},
    "synthetic_weights": True,
    "repeat": 3,
    "concurrency": 8,
    "seconds": 60.0,
}


def test_a_shapes_run_alone_gives_each_shape_over_w1_and_its_table():
    from bench import suite

    def shape(name: str, faces_per_s: float, rss: float) -> dict:
        return {
            "label": suite.SHAPE_LABELS[name],
            "env": {"FACESTREAM_ENGINE_THREADS": "1"} if name == "p2" else {},
            "saturated": {"faces_per_s": faces_per_s, "p50_s": 1.0, "p99_s": 2.0},
            "peak_rss_mb": [rss],
        }

    report = {
        **RUN_ALONE,
        "facestream": {
            "w1": shape("w1", 2.0, 1000),
            "w2": shape("w2", 1.96, 1010),
            "p2": shape("p2", 1.5, 900),
            "w4": shape("w4", 1.8, 1300),
        },
    }
    report["ratios"] = suite.ratios(report)
    assert report["ratios"] == {
        "w2_vs_w1": 1.96 / 2.0,
        "p2_vs_w1": 1.5 / 2.0,
        "w4_vs_w1": 1.8 / 2.0,
        "rss_w4_vs_w1": 1.3,
    }
    table = suite.table(report)
    assert "| -w 2 >= 0.95x -w 1 | 0.98x | met |" in table
    assert "| -w 4 >= 0.95x -w 1 | 0.90x | NOT met |" in table
    assert "| -w 4 RSS <= 1.2x -w 1 RSS | 1.30x | NOT met |" in table
    assert "FACESTREAM_ENGINE_THREADS=1" in table


def test_an_embedding_run_alone_gives_its_cost_and_agreement_and_its_table():
    from bench import suite

    report = {
        **RUN_ALONE,
        "batch_size": 8,
        "embedding": {
            "engine": "openvino",
            "precision": "fp32",
            "shared": "age,gender,race,embedding",
            "faces": 16,
            "s_per_face": {
                "attributes": 0.1,
                "with_embedding": 0.106,
                "peer": 1.2,
                "ours": 0.3,
                "ours_attributes": 0.294,
            },
            "embedding_extra": 0.06,
            "embedding_extra_end_to_end": 0.3 / 0.294 - 1,
            "vs_peer": 4.0,
            "agreement": {"int8": {"min": 0.9971, "median": 0.999}},
        },
    }
    report["ratios"] = suite.ratios(report)
    assert report["ratios"] == {"embedding_extra": 0.06, "embedding_vs_peer": 4.0}
    table = suite.table(report)
    target = "| embedding: <= 5% more per face than the four attributes alone | +6.0% | NOT met |"
    assert target in table
    assert "0.100 / 0.106 s" in table and "1.200 / 0.300 s" in table
    assert "0.294 / 0.300 s (+2.0%)" in table
    assert "| embedding, OpenVINO int8 vs fp32: cosine similarity, lowest / median | " in table
    assert "with and without the embedding" in table
