"""The bench's targets and the ratios they are read from.

Every ratio is computed from the figures a run has: one whose section failed or did not run
is absent, and the ratios of the other sections are still there. Each target is written
once, as data: the figure it reads, its bound, and the section that measures it, so that
the table, the check and the report of a failed section agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Report = dict[str, Any]


def _saturated(report: Report, section: str, name: str) -> float:
    return report[section]["saturated"][name]["faces_per_s"]


def _strongest(report: Report, section: str) -> float:
    return _saturated(report, section, report[section]["strongest_peer"])


def _layouts(report: Report) -> dict[str, Any]:
    return report["shapes"]["layouts"]


def best_exact(report: Report) -> float:
    """The best exact-mode faces/s of facestream in this run: the headline's -w 1 and every
    dataflow shape measured."""
    rates = [_saturated(report, "headline", "facestream_exact")]
    if "shapes" in report:
        rates += [shape["saturated"]["faces_per_s"] for shape in _layouts(report).values()]
    return max(rates)


def best_shape_vs_ceiling(report: Report) -> float:
    """The best shape's faces/s over the exact ceiling measured in the same rotation."""
    best = max(shape["saturated"]["faces_per_s"] for shape in _layouts(report).values())
    return best / report["shapes"]["ceiling_exact"]["faces_per_s"]


def _frames_per_s(report: Report, name: str) -> float:
    return report["video"]["passes"][name]["frames_per_s"]


def _video_peer(report: Report) -> float:
    return _frames_per_s(report, report["video"]["strongest_peer"])


def _half_load_p99(report: Report, name: str) -> float:
    return report["headline"]["half_load"][name]["p99_s"]


def _face_counts_equal(report: Report) -> float:
    counts = report["headline"]["face_counts"]
    return float(counts["facestream_exact"] == counts[report["headline"]["strongest_peer"]])


def _fast_face_counts(report: Report) -> float:
    counts = report["headline"]["face_counts"]
    pairs = zip(counts["facestream_fast"], counts["facestream_exact"], strict=True)
    return sum(a == b for a, b in pairs) / len(counts["facestream_exact"])


def _shape_ratio(name: str) -> Callable[[Report], float]:
    def ratio(report: Report) -> float:
        shapes = _layouts(report)
        return shapes[name]["saturated"]["faces_per_s"] / shapes["w1"]["saturated"]["faces_per_s"]

    return ratio


def _tracker_detection(report: Report, figure: str) -> float:
    """The lowest `figure` of the tracker's detection over the modes and videos."""
    return min(
        video[figure]
        for mode in report["cameras"]["modes"].values()
        for video in mode["tracker_detection"].values()
    )


def _first_dataflow_rss(report: Report, name: str) -> float:
    return _layouts(report)[name]["peak_rss_mb"][0]


# Every ratio of a run, by its name in latest.json: how it is computed from the figures.
RATIOS: dict[str, Callable[[Report], float]] = {
    "crops_vs_strongest_peer": lambda r: (
        _saturated(r, "crops", "facestream_exact") / _strongest(r, "crops")
    ),
    "crops_fast_vs_strongest_peer": lambda r: (
        _saturated(r, "crops", "facestream_fast") / _strongest(r, "crops")
    ),
    "best_vs_strongest_peer": lambda r: best_exact(r) / _strongest(r, "headline"),
    "fast_vs_strongest_peer": lambda r: (
        _saturated(r, "headline", "facestream_fast") / _strongest(r, "headline")
    ),
    "best_vs_peer_1_process": lambda r: best_exact(r) / _saturated(r, "headline", "peer_1_process"),
    "best_vs_ceiling": best_shape_vs_ceiling,
    "headline_exact_vs_ceiling": lambda r: (
        _saturated(r, "headline", "facestream_exact") / r["ceiling"]["exact"]["faces_per_s"]
    ),
    "fast_vs_fast_ceiling": lambda r: (
        _saturated(r, "headline", "facestream_fast") / r["ceiling"]["fast"]["faces_per_s"]
    ),
    "half_load_p99_vs_peer": lambda r: (
        _half_load_p99(r, "facestream_exact") / _half_load_p99(r, r["headline"]["strongest_peer"])
    ),
    "same_face_counts_as_peer": _face_counts_equal,
    "fast_same_face_counts": _fast_face_counts,
    "submit_req_per_s": lambda r: r["ingest"]["submit_req_per_s"],
    "submit_vs_raw": lambda r: r["ingest"]["submit_vs_raw"],
    "di_extra_per_message_us": lambda r: r["di"]["extra_per_message_us"],
    "di_share": lambda r: (
        r["di"]["extra_per_message_us"] / 1e6 * r["ceiling"]["exact"]["faces_per_s"]
    ),
    "embedding_extra": lambda r: r["embedding"]["embedding_extra"],
    "embedding_vs_peer": lambda r: r["embedding"]["vs_peer"],
    "identify_extra": lambda r: r["recognition"]["identify_extra"],
    "identify_vs_deepface_search": lambda r: r["recognition"]["identify_vs_deepface_search"],
    "identify_vs_deepface_find": lambda r: r["recognition"]["identify_vs_deepface_find"],
    "enrol_faces_per_s": lambda r: r["recognition"]["enrol_faces_per_s"],
    "store_vs_deepface_bytes_per_face": lambda r: (
        r["recognition"]["peers"]["sqlite_bytes_per_face"]
        / r["recognition"]["store_bytes_per_face"]
    ),
    "scale_p99_ms_at_100k": lambda r: _at_100k(r)["alone"]["p99_ms"],
    "scale_recall_at_100k": lambda r: _at_100k(r)["recall_at_1"],
    "identify_at_100k_vs_deepface_ann": lambda r: r["recognition_scale"][
        "identify_at_largest_vs_deepface_ann"
    ],
    "enrol_100k_s": lambda r: 100_000 / r["recognition_scale"]["enrol_faces_per_s"],
    "disk_per_face_vs_deepface": lambda r: r["recognition_scale"]["disk_vs_deepface"],
    "w2_vs_w1": _shape_ratio("w2"),
    "p2_vs_w1": _shape_ratio("p2"),
    "w4_vs_w1": _shape_ratio("w4"),
    "rss_w4_vs_w1": lambda r: _first_dataflow_rss(r, "w4") / _first_dataflow_rss(r, "w1"),
    "video_vs_strongest_peer": lambda r: _frames_per_s(r, "facestream_exact") / _video_peer(r),
    "video_fast_vs_strongest_peer": lambda r: _frames_per_s(r, "facestream_fast") / _video_peer(r),
    "video_tracking_vs_untracked": lambda r: (
        _frames_per_s(r, "facestream_exact") / _frames_per_s(r, "facestream_exact_untracked")
    ),
    "carried_labels_equal": lambda r: r["video"]["carried_agreement"]["dominant_labels_equal"],
    "live_p99_s": lambda r: r["video"]["live_fast"]["p99_s"],
    "overlap_vs_turns": lambda r: r["overlap"]["overlap_vs_turns"],
    "cameras_fast": lambda r: r["cameras"]["modes"]["fast"]["held"],
    "cameras_exact": lambda r: r["cameras"]["modes"]["exact"]["held"],
    "cameras_fast_vs_strongest_peer": lambda r: (
        r["cameras"]["modes"]["fast"]["held"] / r["cameras"]["peer"]["cameras"]
    ),
    "fast_first_start_rss_mb": lambda r: r["cameras"]["modes"]["fast"]["first_start_peak_rss_mb"],
    "fast_steady_rss_mb": lambda r: r["cameras"]["modes"]["fast"]["steady_peak_rss_mb"],
    "exact_steady_rss_mb": lambda r: r["cameras"]["modes"]["exact"]["steady_peak_rss_mb"],
    "tracker_detection_found": lambda r: _tracker_detection(r, "found_share"),
    "tracker_detection_labels_equal": lambda r: _tracker_detection(r, "labels_equal_share"),
}


def ratios(report: Report) -> dict[str, float]:
    """Every ratio whose figures this run has."""
    found: dict[str, float] = {}
    for name, compute in RATIOS.items():
        try:
            found[name] = float(compute(report))
        except (KeyError, TypeError, ZeroDivisionError):
            continue  # a figure it needs is not in this run
    return found


def _times(value: float) -> str:
    return f"{value:.2f}x"


def _at_100k(report: Mapping[str, Any]) -> Mapping[str, Any]:
    return report["recognition_scale"]["sizes"]["100000"]


def _percent(value: float) -> str:
    return f"{100 * value:+.1f}%"


def _share(value: float) -> str:
    return f"{100 * value:.1f}%"


def _seconds(value: float) -> str:
    return f"{value:.2f} s"


def _megabytes(value: float) -> str:
    return f"{value:,.0f} MB"


def _cameras(value: float) -> str:
    return f"{value:.0f}"


def _yes_no(value: float) -> str:
    return "yes" if value == 1.0 else "no"


@dataclass(frozen=True)
class Target:
    """A promise the bench checks: `ratio` (a key of RATIOS) against `bound`, measured by
    `section` (with the figures of the sections in `also`). `bound` None: a figure reported
    beside the targets, with no promise."""

    claim: str
    ratio: str
    section: str
    bound: float | None = None
    at_most: bool = False
    shown: Callable[[float], str] = _times
    strict: bool = False  # "<" or ">" rather than "<=" or ">="
    also: tuple[str, ...] = ()
    bound_text: str = ""  # the bound as the label says it, when `shown` would not

    @property
    def sections(self) -> tuple[str, ...]:
        return (self.section, *self.also)

    @property
    def label(self) -> str:
        if self.bound is None:
            return f"{self.claim} (no target)"
        if self.shown is _yes_no:
            return self.claim
        sign = ("<" if self.strict else "<=") if self.at_most else (">" if self.strict else ">=")
        return f"{self.claim} {sign} {self.bound_text or self.shown(self.bound).lstrip('+')}"

    def met(self, ratios: dict[str, float]) -> bool | None:
        """Met or not; None for a figure without a bound. A missing figure is not met."""
        if self.bound is None:
            return None
        value = ratios.get(self.ratio)
        if value is None:
            return False
        if self.at_most:
            return value < self.bound if self.strict else value <= self.bound
        return value > self.bound if self.strict else value >= self.bound


TARGETS: tuple[Target, ...] = (
    Target(
        "face crops, exact: facestream vs the strongest peer",
        "crops_vs_strongest_peer",
        "crops",
        3.5,
    ),
    Target(
        "face crops, fast: facestream vs the strongest peer",
        "crops_fast_vs_strongest_peer",
        "crops",
        7.0,
    ),
    Target(
        "photos, exact: best facestream vs the strongest peer (DeepFace's detection bounds it)",
        "best_vs_strongest_peer",
        "headline",
    ),
    Target(
        "photos, exact: best facestream shape vs its own ceiling, in one rotation",
        "best_vs_ceiling",
        "shapes",
        0.9,
    ),
    Target(
        "exact: same face count as the peer on every image",
        "same_face_counts_as_peer",
        "headline",
        1.0,
        shown=_yes_no,
    ),
    Target(
        "photos, fast: facestream vs the strongest peer", "fast_vs_strongest_peer", "headline", 5.0
    ),
    Target(
        "fast: face count equal to exact's, share of images",
        "fast_same_face_counts",
        "headline",
        0.95,
        shown=_share,
    ),
    Target(
        "p99 at half the strongest peer's load, vs the peer's p99",
        "half_load_p99_vs_peer",
        "headline",
        0.5,
        at_most=True,
    ),
    Target(
        "Submit, requests/s", "submit_req_per_s", "ingest", 1000.0, shown=lambda v: f"{v:.0f} req/s"
    ),
    Target("Submit vs the raw producer", "submit_vs_raw", "ingest", 0.6),
    Target(
        "DI: share of the per-face time",
        "di_share",
        "di",
        0.01,
        at_most=True,
        strict=True,
        shown=lambda v: f"{100 * v:.5f}%",
        also=("ceiling",),
        bound_text="1%",
    ),
    Target(
        "embedding: extra time per face over the four attributes",
        "embedding_extra",
        "embedding",
        0.05,
        at_most=True,
        shown=_percent,
    ),
    Target(
        "embedding + attributes vs the peer's represent + analyze", "embedding_vs_peer", "embedding"
    ),
    Target(
        "identification at 10,000 faces: share of a face's analysis",
        "identify_extra",
        "recognition",
        0.05,
        at_most=True,
        shown=_share,
    ),
    Target(
        "identification at 10,000 faces vs DeepFace.search (sqlite, exact), per face",
        "identify_vs_deepface_search",
        "recognition",
        20.0,
    ),
    Target(
        "identification at 10,000 faces vs DeepFace.find, per face",
        "identify_vs_deepface_find",
        "recognition",
    ),
    Target(
        "enrolment into the gallery store, faces/s",
        "enrol_faces_per_s",
        "recognition",
        shown=lambda v: f"{v:.0f}",
    ),
    Target(
        "bytes per enrolled face: DeepFace's sqlite vs facestream's store",
        "store_vs_deepface_bytes_per_face",
        "recognition",
    ),
    Target(
        "identification at 100,000 faces (codes, then exact ranking), query p99 alone, ms",
        "scale_p99_ms_at_100k",
        "recognition_scale",
        20.0,
        at_most=True,
        shown=lambda v: f"{v:.1f}",
    ),
    Target(
        "identification at 100,000 faces: recall@1 against exact search",
        "scale_recall_at_100k",
        "recognition_scale",
        0.99,
        shown=lambda v: f"{v:.3f}",
    ),
    Target(
        "identification at 100,000 faces vs DeepFace.search ann at 10,000 (its largest here)",
        "identify_at_100k_vs_deepface_ann",
        "recognition_scale",
        10.0,
    ),
    Target(
        "enrolment of 100,000 precomputed embeddings, seconds",
        "enrol_100k_s",
        "recognition_scale",
        300.0,
        at_most=True,
        shown=lambda v: f"{v:.0f}",
    ),
    Target(
        "disk per enrolled face: DeepFace's sqlite vs facestream's store at 100,000",
        "disk_per_face_vs_deepface",
        "recognition_scale",
        25.0,
    ),
    Target("-w 2 vs -w 1", "w2_vs_w1", "shapes", 0.95),
    Target("2 processes x -w 1 vs -w 1", "p2_vs_w1", "shapes", 0.95),
    Target("-w 4 vs -w 1", "w4_vs_w1", "shapes", 0.95),
    Target("-w 4 peak RSS vs -w 1's", "rss_w4_vs_w1", "shapes", 1.2, at_most=True),
    Target(
        "video, exact, tracking on: vs the strongest peer", "video_vs_strongest_peer", "video", 4.0
    ),
    Target(
        "video, exact: tracking on vs tracking off", "video_tracking_vs_untracked", "video", 2.0
    ),
    Target(
        "video, fast, tracking on: vs the strongest peer",
        "video_fast_vs_strongest_peer",
        "video",
        8.0,
    ),
    Target(
        "carried dominant labels equal, share of carried faces",
        "carried_labels_equal",
        "video",
        0.95,
        shown=_share,
    ),
    Target(
        "live 5 fps, fast mode, capture to result p99",
        "live_p99_s",
        "video",
        1.0,
        at_most=True,
        strict=True,
        shown=_seconds,
    ),
    Target(
        "live 5 fps cameras held by one -w 1 system, fast mode with tracking",
        "cameras_fast",
        "cameras",
        4.0,
        shown=_cameras,
    ),
    Target(
        "live 5 fps cameras held by one -w 1 system, exact mode with tracking",
        "cameras_exact",
        "cameras",
        2.0,
        shown=_cameras,
    ),
    Target(
        "cameras held, fast mode, vs the strongest peer's (its sampled frames/s / 5)",
        "cameras_fast_vs_strongest_peer",
        "cameras",
        25.0,
    ),
    Target(
        "tracker's detection vs every frame searched whole: faces found, lowest of modes "
        "and videos",
        "tracker_detection_found",
        "cameras",
        0.98,
        shown=_share,
    ),
    Target(
        "tracker's detection vs every frame searched whole: dominant labels equal on the "
        "faces found, lowest",
        "tracker_detection_labels_equal",
        "cameras",
        0.95,
        shown=_share,
    ),
    Target(
        "fast mode's dataflow at its first start (converting, quantizing, in child "
        "processes counted with it), peak memory",
        "fast_first_start_rss_mb",
        "cameras",
        4096.0,
        at_most=True,
        shown=_megabytes,
    ),
    Target(
        "fast mode's dataflow in steady state, peak memory",
        "fast_steady_rss_mb",
        "cameras",
        2560.0,
        at_most=True,
        shown=_megabytes,
    ),
    Target(
        "exact mode's dataflow in steady state, peak memory",
        "exact_steady_rss_mb",
        "cameras",
        3072.0,
        at_most=True,
        shown=_megabytes,
    ),
)


def target_rows(ratios: dict[str, float], status: dict[str, dict[str, Any]]) -> list[str]:
    """The targets table of a run: each target of a section that ran or failed, its value
    and verdict; a failed section's targets are not met, and say why."""
    lines = ["| target | in this run | |", "|---|---|---|"]
    for target in chosen(status):
        value = ratios.get(target.ratio)
        failed = [
            f"{name} {status[name]['status']}"
            for name in target.sections
            if status[name]["status"] != "ok"
        ]
        shown = target.shown(value) if value is not None else f"none: {', '.join(failed)}"
        verdict = target.met(ratios)
        lines.append(
            f"| {target.label} | {shown} | "
            f"{'' if verdict is None else 'met' if verdict else 'NOT met'} |"
        )
    return lines


def chosen(status: dict[str, dict[str, Any]]) -> list[Target]:
    """The targets whose sections were all chosen in this run (`status` has each chosen)."""
    return [t for t in TARGETS if all(name in status for name in t.sections)]


def unmet(ratios: dict[str, float], status: dict[str, dict[str, Any]]) -> list[str]:
    """The labels of the chosen targets that this run did not meet."""
    return [target.label for target in chosen(status) if target.met(ratios) is False]
