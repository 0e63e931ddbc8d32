"""The bookkeeping of the recognition_scale row, on made-up figures: the exact top-k kept
over blocks, the ratios, 1,000,000 faces on paper, and the plot."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest

from bench.recognition_plot import series_of, svg
from bench.recognition_scale import ExactTop, million_on_paper, with_ratios
from bench.targets import ratios, unmet

RAN = {"recognition_scale": {"status": "ok"}}


def made_up_row() -> dict:
    def at(p50: float, p99: float, recall: float, faces: int) -> dict:
        return {
            "alone": {"p50_ms": p50, "p99_ms": p99},
            "under_load": {"p50_ms": 2 * p50, "p99_ms": 2 * p99},
            "recall_at_1": recall,
            "top5_overlap": 0.99,
            "copy_load_s": faces / 100_000,
            "copy_bytes_per_face": 528.0,
            "bytes_per_face": 18_000.0,
        }

    ten, hundred = at(6.0, 8.0, 1.0, 10_000), at(9.0, 12.0, 0.995, 100_000)
    ten["exact_copy"] = {"p50_ms": 5.0, "p99_ms": 7.0}
    return {
        "sizes": {"10000": ten, "100000": hundred},
        "enrol_faces_per_s": 500.0,
        "enrolled": 100_000,
        "peers": {
            "10000": {
                "search_s_per_face": 5.0,
                "ann_s_per_face": 0.2,
                "find_s_per_face": 5.5,
                "build_index_s": 30.0,
                "sqlite_bytes_per_face": 650_000.0,
            }
        },
    }


def test_the_exact_top_is_the_same_over_blocks_as_at_once():
    rng = np.random.default_rng(3)
    rows = rng.random((500, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    queries = rows[[3, 70, 444]] + 0.01
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    ids = np.arange(1000, 1500)

    whole = ExactTop(queries)
    whole.add(rows, ids)
    blocks = ExactTop(queries)
    for start in range(0, 500, 120):
        blocks.add(rows[start : start + 120], ids[start : start + 120])

    distances = 1 - queries.astype(np.float64) @ rows.astype(np.float64).T
    expected = ids[np.argsort(distances, axis=1)[:, :5]]
    assert (blocks.face_ids == expected).all()
    assert (whole.face_ids == expected).all()
    assert blocks.face_ids[:, 0].tolist() == [1003, 1070, 1444]


def test_the_ratios_compare_the_largest_gallery_with_the_peers():
    row = with_ratios(made_up_row())
    # DeepFace's ann at 10,000 (200 ms) against facestream's p50 at 100,000 (9 ms).
    assert row["identify_at_largest_vs_deepface_ann"] == pytest.approx(200 / 9)
    # Its exact search grows with the rows it reads: 5 s at 10,000 is 50 s at 100,000.
    assert row["identify_at_largest_vs_deepface_search_on_paper"] == pytest.approx(50_000 / 9)
    assert row["disk_vs_deepface"] == pytest.approx(650_000 / 18_000)

    figures = ratios({"recognition_scale": row})
    assert figures["scale_p99_ms_at_100k"] == 12.0
    assert figures["enrol_100k_s"] == pytest.approx(200.0)
    assert unmet(figures, RAN) == []


def test_a_missed_target_is_reported():
    row = made_up_row()
    row["sizes"]["100000"]["alone"]["p99_ms"] = 25.0
    row["sizes"]["100000"]["recall_at_1"] = 0.97
    missed = unmet(ratios({"recognition_scale": with_ratios(row)}), RAN)
    assert len(missed) == 2
    assert any("p99" in line for line in missed)
    assert any("recall@1" in line for line in missed)


def test_a_million_on_paper_grows_as_the_measured_line():
    paper = million_on_paper(with_ratios(made_up_row()))
    # 3 ms more from 10,000 to 100,000 faces: 1 ms per 30,000, 30 ms more to 1,000,000.
    assert paper["query_p50_ms"] == pytest.approx(9.0 + 30.0)
    assert paper["query_p99_ms"] == pytest.approx(39.0 * 12 / 9)
    assert paper["bytes"] == pytest.approx(18_000 * 1_000_000)
    assert paper["copy_bytes"] == pytest.approx(528 * 1_000_000)
    assert paper["enrol_s"] == pytest.approx(2_000)
    assert paper["copy_load_s"] == pytest.approx(10.0)
    assert "per 1,000 faces" in paper["arithmetic"]


def test_the_plot_draws_measured_points_and_paper_apart():
    row = with_ratios(made_up_row())
    lines = {line.name: line for line in series_of(row)}
    assert lines["facestream, codes"].measured == ((10_000, 6.0), (100_000, 9.0))
    assert lines["facestream, codes"].on_paper == ((1_000_000, pytest.approx(39.0)),)
    assert lines["DeepFace.search exact"].on_paper == ((100_000, 50_000.0), (1_000_000, 500_000.0))
    assert lines["DeepFace.search ann"].on_paper == ()

    document = ElementTree.fromstring(svg(list(lines.values()), "AMD EPYC"))
    circles = document.findall("{http://www.w3.org/2000/svg}circle")
    hollow = [c for c in circles if c.get("fill") == "white"]
    assert len(circles) == 2 + 1 + 1 + 1 + 1 + 1 + 2 + 2  # measured, then on paper
    assert len(hollow) == 1 + 2 + 2
    dashed = [
        p for p in document.findall("{http://www.w3.org/2000/svg}path") if p.get("stroke-dasharray")
    ]
    assert len(dashed) == 3
