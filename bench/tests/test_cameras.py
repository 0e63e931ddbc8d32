"""The bookkeeping of the cameras row, on made-up figures: a camera held or not from its
latencies and drops, the count held over steps, the ratios, targets and table rows."""

from __future__ import annotations

import pytest

from bench.cameras import camera_counts, camera_figures, held_count
from bench.tables import camera_rows
from bench.targets import ratios, unmet

RAN = {"cameras": {"status": "ok"}}


def client_report(
    latencies: list[float], sent: int = 300, dropped: int = 0, answered: int | None = None
) -> dict:
    return {
        "sent": sent,
        "answered": sent if answered is None else answered,
        "refused": 0,
        "dropped": dropped,
        "failed": 0,
        "broken": "",
        "seconds": 60.0,
        "latencies": latencies,
        "cpu_s": 3.0,
    }


def test_a_camera_is_held_below_one_second_at_p99_with_at_most_one_percent_dropped():
    quick = [0.3] * 297 + [0.9] * 3
    held = camera_figures(client_report(quick, dropped=3))  # 3 of 303 captured: 0.99%
    assert held["held"] and held["p99_s"] < 1.0
    assert held["frames_answered_per_s"] == pytest.approx(5.0)
    assert held["dropped_share"] == pytest.approx(3 / 303)

    slow_tail = [0.3] * 290 + [1.2] * 10  # p99 over a second
    assert not camera_figures(client_report(slow_tail))["held"]
    assert not camera_figures(client_report(quick, dropped=4))["held"]  # 4 of 304: 1.3%
    # A frame sent and never answered, or a camera that answered nothing, is not held.
    assert not camera_figures(client_report(quick, answered=299))["held"]
    nothing = camera_figures(client_report([], sent=0, dropped=0))
    assert not nothing["held"] and nothing["dropped_share"] == 1.0


def test_the_count_held_is_the_last_step_before_the_first_not_held():
    def steps(*held: bool) -> list[dict]:
        counts = camera_counts()
        return [{"cameras": next(counts), "held": h} for h in held]

    assert held_count(steps(True, True, True, False)) == 3
    assert held_count(steps(True, True, True, True, True, False)) == 6
    assert held_count(steps(False)) == 0
    # A step held after one that was not does not count: the count is where it first broke.
    assert held_count(steps(True, False, True)) == 1


def made_up_row(
    fast_held: int, exact_held: int, peer_frames_per_s: float, found: float = 0.99
) -> dict:
    def mode(held: int, first: float, steady: float) -> dict:
        step = {
            "cameras": held,
            "held": True,
            "frames_answered_per_s": 5.0 * held,
            "p99_s": 0.8,
            "dropped_share": 0.0,
            "cpu_share": {"dataflow": 0.7, "clients": 0.05},
            "cpu_s_per_frame": {"dataflow": 0.12, "clients": 0.01},
            "dataflow_stage_s_per_frame": {"decode": 0.001, "detect": 0.05, "analyze": 0.01},
        }
        return {
            "held": held,
            "steps": [step, {**step, "cameras": held + 1, "held": False}],
            "at_held": step,
            "first_start_peak_rss_mb": first,
            "first_start_s": 60.0,
            "steady_rss_mb": steady - 100,
            "steady_peak_rss_mb": steady,
            "tracker_detection": {
                "demo": {"faces": 86, "found_share": 1.0, "labels_equal_share": 1.0},
                "grid": {"faces": 300, "found_share": found, "labels_equal_share": 0.97},
            },
        }

    return {
        "fps": 5.0,
        "step_seconds": 60.0,
        "modes": {
            "fast": mode(fast_held, 3900.0, 1600.0),
            "exact": mode(exact_held, 7000.0, 2900.0),
        },
        "peer": {
            "peer": "peer_2_processes",
            "from": "measured here",
            "frames_per_s": peer_frames_per_s,
            "cameras": peer_frames_per_s / 5.0,
        },
    }


def test_the_ratios_and_targets_read_the_row():
    report = {"cameras": made_up_row(4, 2, 0.8), "sections": RAN}
    found = ratios(report)
    assert found["cameras_fast"] == 4 and found["cameras_exact"] == 2
    assert found["cameras_fast_vs_strongest_peer"] == pytest.approx(4 / 0.16)
    assert found["fast_first_start_rss_mb"] == 3900.0
    assert found["exact_steady_rss_mb"] == 2900.0
    assert found["tracker_detection_found"] == 0.99  # the lowest of modes and videos
    assert found["tracker_detection_labels_equal"] == 0.97
    assert unmet(found, RAN) == []
    missed = ratios({"cameras": made_up_row(4, 2, 0.8, found=0.97), "sections": RAN})
    assert [label for label in unmet(missed, RAN) if "faces found" in label]

    short = {"cameras": made_up_row(3, 1, 0.8), "sections": RAN}
    missed = unmet(ratios(short), RAN)
    assert any("fast mode with tracking" in label for label in missed)
    assert any("exact mode with tracking" in label for label in missed)
    assert any("vs the strongest peer" in label for label in missed)  # 3 / 0.16 < 25


def test_the_table_shows_each_step_the_stages_and_the_memory():
    rows = camera_rows({"cameras": made_up_row(4, 2, 0.8)})
    text = "\n".join(rows)
    assert "fast: 4 camera(s)" in text and "held: 20.0" in text
    assert "fast: 5 camera(s)" in text and "NOT held" in text
    assert "detect 50" in text and "dataflow 120" in text
    assert "3,900 / 1,600 MB" in text
    assert "0.80, 0.16" in text
    assert "fast, grid video" in text and "99.0% found, 97.0% equal" in text
