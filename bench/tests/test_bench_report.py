"""`make bench`'s run and report: sections that fail or cannot run are reported while the
rest still run, ratios come from what a run has, targets are read once, and the weight files
every chosen section needs are there (synthetic ones made, never beside real ones) before
the first section starts."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from apps.launch import PROJECT_ROOT
from bench import measures, suite, tables, targets
from bench.sections import Section, plan_weights, prepare_weights
from facestream.models import (
    ACTION_MODELS,
    ACTIONS,
    ATTRIBUTE_ACTIONS,
    WeightState,
    check_weights,
    weights_dir_of,
)

# What every run reports besides its sections.
RUN = {
    "machine": "a CPU",
    "engine": "openvino",
    "precision": {"exact": "fp32", "fast": "int8"},
    "synthetic_weights": True,
    "images": "public demo set",
    "image_count": 5,
    "repeat": 3,
    "rounds": 3,
    "concurrency": 8,
    "seconds": 60.0,
}


def ran(**sections: str) -> dict:
    """A report's section statuses: each named section with its status."""
    return {name: {"status": status, "seconds": 1} for name, status in sections.items()}


def shape(name: str, faces_per_s: float, rss: float) -> dict:
    return {
        "label": measures.SHAPE_LABELS[name],
        "env": {"FACESTREAM_ENGINE_THREADS": "1"} if name == "p2" else {},
        "saturated": {"faces_per_s": faces_per_s, "p50_s": 1.0, "p99_s": 2.0},
        "peak_rss_mb": [rss],
    }


def test_a_shapes_run_gives_each_shape_over_w1_and_its_table():
    report = {
        **RUN,
        "sections": ran(shapes="ok"),
        "shapes": {
            "layouts": {
                "w1": shape("w1", 2.0, 1000),
                "w2": shape("w2", 1.96, 1010),
                "p2": shape("p2", 1.5, 900),
                "w4": shape("w4", 1.8, 1300),
            },
            "ceiling_exact": {"faces_per_s": 2.5, "runs": [2.4, 2.5, 2.6]},
        },
    }
    report["ratios"] = targets.ratios(report)
    assert report["ratios"] == {
        "w2_vs_w1": 1.96 / 2.0,
        "p2_vs_w1": 1.5 / 2.0,
        "w4_vs_w1": 1.8 / 2.0,
        "rss_w4_vs_w1": 1.3,
        "best_vs_ceiling": 2.0 / 2.5,
    }
    table = tables.table(report)
    assert "| -w 2 vs -w 1 >= 0.95x | 0.98x | met |" in table
    assert "| -w 4 vs -w 1 >= 0.95x | 0.90x | NOT met |" in table
    assert "| -w 4 peak RSS vs -w 1's <= 1.20x | 1.30x | NOT met |" in table
    assert "FACESTREAM_ENGINE_THREADS=1" in table
    assert "| ceiling, exact mode, in the shapes' rotation (runs: 2.40, 2.50, 2.60) |" in table
    assert "embedding" not in table  # only the chosen sections' targets
    assert targets.unmet(report["ratios"], report["sections"]) == [
        "photos, exact: best facestream shape vs its own ceiling, in one rotation >= 0.90x",
        "2 processes x -w 1 vs -w 1 >= 0.95x",
        "-w 4 vs -w 1 >= 0.95x",
        "-w 4 peak RSS vs -w 1's <= 1.20x",
    ]


def test_an_embedding_run_gives_its_cost_and_agreement_and_its_table():
    report = {
        **RUN,
        "batch_size": 8,
        "sections": ran(embedding="ok"),
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
    report["ratios"] = targets.ratios(report)
    assert report["ratios"] == {"embedding_extra": 0.06, "embedding_vs_peer": 4.0}
    table = tables.table(report)
    extra = "| embedding: extra time per face over the four attributes <= 5.0% | +6.0% | NOT met |"
    assert extra in table
    no_target = "embedding + attributes vs the peer's represent + analyze (no target) | 4.00x |  |"
    assert no_target in table
    assert "0.100 / 0.106 s" in table and "1.200 / 0.300 s" in table
    assert "0.294 / 0.300 s (+2.0%)" in table
    assert "| embedding, OpenVINO int8 vs fp32: cosine similarity, lowest / median | " in table


def test_a_ratio_needs_every_figure_it_reads_and_the_others_stay():
    di = {"extra_per_message_us": 0.1, "resolve_per_message_us": 0.2}
    alone = targets.ratios({"di": di})
    assert alone == {"di_extra_per_message_us": 0.1}  # no ceiling: no share of a face's time
    with_ceiling = targets.ratios({"di": di, "ceiling": {"exact": {"faces_per_s": 2.0}}})
    assert with_ceiling["di_share"] == pytest.approx(0.1e-6 * 2.0)
    # A headline without shapes: the best exact figure is the headline's own.
    headline = {
        "saturated": {
            "peer_1_process": {"faces_per_s": 1.0},
            "peer_2_processes": {"faces_per_s": 1.5},
            "facestream_exact": {"faces_per_s": 3.0},
            "facestream_fast": {"faces_per_s": 9.0},
        },
        "strongest_peer": "peer_2_processes",
    }
    found = targets.ratios({"headline": headline})
    assert found["best_vs_strongest_peer"] == 2.0 and found["fast_vs_strongest_peer"] == 6.0
    assert "best_vs_ceiling" not in found and "half_load_p99_vs_peer" not in found
    assert "headline_exact_vs_ceiling" not in found


def test_a_failed_sections_targets_are_not_met_and_say_why():
    status = ran(ingest="failed", di="ok", ceiling="skipped")
    ratios = targets.ratios({"di": {"extra_per_message_us": 0.1}})
    rows = "\n".join(targets.target_rows(ratios, status))
    assert "| Submit, requests/s >= 1000 req/s | none: ingest failed | NOT met |" in rows
    assert "| DI: share of the per-face time < 1% | none: ceiling skipped | NOT met |" in rows
    assert "video" not in rows  # not chosen
    assert "Submit vs the raw producer >= 0.60x" in targets.unmet(ratios, status)


def bench(*args: str, tmp_path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench.suite", "--out", str(tmp_path), *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_a_section_made_to_fail_is_reported_and_the_next_section_still_runs(tmp_path):
    done = bench("--only", "video_stages,ingest,di", "--fail-in", "ingest", tmp_path=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads((tmp_path / "latest.json").read_text())
    sections = report["sections"]
    assert list(sections) == ["video_stages", "ingest", "di"]  # the run's order
    assert sections["video_stages"]["status"] == "skipped"
    assert "video section" in sections["video_stages"]["error"]
    assert sections["ingest"]["status"] == "failed"
    assert "fail point: --fail-in ingest" in sections["ingest"]["error"]
    assert sections["di"]["status"] == "ok"
    assert report["di"]["resolve_per_message_us"] > 0  # measured, in a child process
    assert set(report["ratios"]) == {"di_extra_per_message_us"}
    assert "| ingest (failed) | bench.sections.FailPointError: fail point: --fail-in ingest |" in (
        done.stdout
    )
    assert "| Submit vs the raw producer >= 0.60x | none: ingest failed | NOT met |" in done.stdout
    assert "DI: operator's bound singletons vs direct call" in done.stdout
    assert "section(s) not measured: video_stages, ingest" in done.stderr


def test_only_names_any_section_and_refuses_an_unknown_one(tmp_path):
    assert [s.name for s in suite.chosen_sections("di, headline")] == ["headline", "di"]
    assert [s.name for s in suite.chosen_sections(None)] == list(suite.SECTION_NAMES)
    refused = bench("--only", "headline,nope", tmp_path=tmp_path)
    assert refused.returncode == 2
    assert "unknown section nope" in refused.stderr and "pipeline_parts" in refused.stderr
    assert not (tmp_path / "latest.json").exists()


# The weights every chosen section needs


def sections_needing(*actions_of: tuple[str, ...]) -> list[Section]:
    return [Section(f"s{i}", dict, actions) for i, actions in enumerate(actions_of)]


def real_weights(path) -> None:
    """A weights file as DeepFace downloads it: HDF5, without facestream's synthetic tag."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        file["kernel"] = np.zeros(4, dtype=np.float32)


def test_missing_files_are_made_synthetic_where_no_real_ones_are(tmp_path):
    plan = plan_weights(tmp_path, sections_needing(ATTRIBUTE_ACTIONS, ACTIONS, ()))
    assert sorted(plan.synthesize) == sorted(ACTIONS)
    assert plan.skipped == {}


def test_beside_real_weights_nothing_is_made_and_the_sections_missing_files_are_named(tmp_path):
    real_weights(tmp_path / ACTION_MODELS["age"].weight_file)
    plan = plan_weights(tmp_path, sections_needing(("age",), ACTIONS, ()))
    assert plan.synthesize == ()
    assert list(plan.skipped) == ["s1"]
    assert plan.skipped["s1"] == [ACTION_MODELS[a].weight_file for a in ACTIONS if a != "age"]


def test_synthetic_weights_already_there_need_nothing(synthetic_home):
    plan = plan_weights(weights_dir_of(synthetic_home), sections_needing(ACTIONS))
    assert plan == type(plan)((), {})


@pytest.mark.model_process
@pytest.mark.models
def test_the_bench_makes_the_one_missing_file_synthetic_and_leaves_the_others(
    synthetic_home, tmp_path
):
    weights = weights_dir_of(tmp_path)
    weights.mkdir(parents=True)
    for action in ATTRIBUTE_ACTIONS:
        name = ACTION_MODELS[action].weight_file
        (weights / name).symlink_to(weights_dir_of(synthetic_home) / name)
    skipped = prepare_weights(weights, [s for s in suite.SECTIONS if s.name == "embedding"])
    assert skipped == {}
    states = {s.component: s.state for s in check_weights(weights, ACTIONS, ())}
    assert set(states.values()) == {WeightState.SYNTHETIC}
    made = weights / ACTION_MODELS["embedding"].weight_file
    assert made.is_file() and not made.is_symlink()
    assert all((weights / ACTION_MODELS[a].weight_file).is_symlink() for a in ATTRIBUTE_ACTIONS)
