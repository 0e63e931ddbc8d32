"""The bench's report as markdown: the machine, each measured section's figures, the sections
that failed, then the targets (bench/targets.py). Every part renders from what the run has,
so a run of some sections, or one where a section failed, prints what it measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.targets import target_rows

Report = dict[str, Any]


def weights_label(report: Report) -> str:
    """Which weights the run's models had."""
    return "synthetic (same architecture and cost)" if report["synthetic_weights"] else "real"


def rate(entry: dict[str, Any]) -> str:
    """A saturated run's faces/s and latency."""
    return (
        f"{entry['faces_per_s']:.2f} faces/s (p50 {entry['p50_s']:.1f} s, "
        f"p99 {entry['p99_s']:.1f} s)"
    )


def headline_rows(report: Report) -> list[str]:
    """The peers and facestream on the photos, latency at half load, CPU shares, memory."""
    head = report["headline"]
    saturated, half, strongest = head["saturated"], head["half_load"], head["strongest_peer"]
    rss, first = head["peak_rss_mb"], head.get("first_start", {})
    labels = {
        "peer_1_process": "peer: DeepFace gRPC server, 1 process",
        "peer_2_processes": "peer: DeepFace gRPC server, 2 processes, round robin",
        "facestream_exact": "facestream -w 1, exact mode",
        "facestream_fast": "facestream -w 1, fast mode",
    }
    lines = [f"| {label} | {rate(saturated[name])} |" for name, label in labels.items()]
    lines += [
        f"| latency at {head['half_load_offered_faces_per_s']:.2f} faces/s (half the strongest "
        f"peer's), {half[strongest]['calls']} calls: peer p50 / p99 | "
        f"{half[strongest]['p50_s']:.2f} / {half[strongest]['p99_s']:.2f} s |",
        f"| same load: facestream -w 1 exact p50 / p99 | "
        f"{half['facestream_exact']['p50_s']:.2f} / {half['facestream_exact']['p99_s']:.2f} s |",
    ]
    if "half_load_p99_ratio_ci95" in head:
        low, high = head["half_load_p99_ratio_ci95"]
        lines.append(
            f"| p99 ratio facestream / peer at half load: 95% bootstrap interval over the calls "
            f"| {low:.2f}x to {high:.2f}x |"
        )
    for name, shares in head.get("cpu_share", {}).items():
        lines.append(
            f"| share of the cores while measuring {name.replace('_', ' ')}: "
            + ", ".join(f"{group.replace('_', ' ')} {100 * v:.0f}%" for group, v in shares.items())
            + " | |"
        )
    lines.append(f"| peak RSS: peer process | {rss['peer']:.0f} MB |")
    for mode in ("exact", "fast"):
        steady = max(rss[f"facestream_{mode}"])
        line = f"| peak RSS: facestream {mode} dataflow, steady state"
        if mode in first:
            start = first[mode]
            line += (
                f" / first start on an empty engine cache ({start['seconds_to_first_answer']:.0f} "
                f"s to its first answer) | {steady:.0f} / {max(start['peak_rss_mb']):.0f} MB |"
            )
        else:
            line += f" | {steady:.0f} MB |"
        lines.append(line)
    return lines


def crop_rows(report: Report) -> list[str]:
    """The face crops' lines of the measures table."""
    crops = report["crops"]
    labels = {
        "peer_1_process": "peer, 1 process",
        "peer_2_processes": "peer, 2 processes",
        "facestream_exact": "facestream -w 1, exact",
        "facestream_fast": "facestream -w 1, fast",
    }
    return [
        f"| face crops ({crops['crops']} faces of the photos, PNG, detector skip): {label} | "
        f"{rate(crops['saturated'][name])} |"
        for name, label in labels.items()
    ]


def video_rows(report: Report) -> list[str]:
    """The video row's lines: each side, agreement and the live camera."""
    video = report["video"]
    passes, strongest, source = video["passes"], video["strongest_peer"], video["source"]
    width, height = source["size"]
    agreement, live = video["carried_agreement"], video["live_fast"]

    def side(entry: dict[str, Any]) -> str:
        return (
            f"{entry['frames_per_s']:.2f} sampled frames/s, {entry['faces_per_s']:.2f} faces/s "
            f"({entry['faces_per_pass']:.0f} faces in {entry['seconds_per_pass']:.1f} s)"
        )

    shares = video["analysed_share"]
    return [
        f"| video: {video['sampled_frames']} frames sampled at {video['sampling_fps']:g} fps "
        f"from a {source['seconds']:.0f} s {width}x{height} composed video; peer "
        f"({strongest.replace('_', ' ')}) called once per frame | {side(passes[strongest])} |",
        f"| same video: facestream -w 1 exact, tracking on ({100 * shares['facestream_exact']:.0f}%"
        f" of faces analysed) | {side(passes['facestream_exact'])} |",
        f"| same video: facestream -w 1 exact, tracking off | "
        f"{side(passes['facestream_exact_untracked'])} |",
        f"| same video: facestream -w 1 fast, tracking on ({100 * shares['facestream_fast']:.0f}%"
        f" of faces analysed) | {side(passes['facestream_fast'])} |",
        f"| carried attributes vs the same faces analysed frame by frame "
        f"({agreement['carried_faces_compared']} faces) | dominant labels equal on "
        f"{100 * agreement['dominant_labels_equal']:.1f}%, max probability difference "
        f"{agreement['max_probability_difference']:.1f} points, max age difference "
        f"{agreement['max_age_difference']:.1f} years |",
        f"| live {video['sampling_fps']:g} fps camera, fast mode, {live['frames']} frames: "
        f"capture to result p50 / p99 | {live['p50_s']:.2f} / {live['p99_s']:.2f} s |",
    ]


def video_stage_rows(report: Report) -> list[str]:
    """Seconds per sampled frame in detection and analysis, in process."""
    stages = report["video_stages"]
    return [
        f"| video, s per frame in detection / analysis (in process): {name} | "
        f"{stages[name]['detect_s']:.3f} / {stages[name]['analyze_s']:.3f} s |"
        for name in ("peer", "facestream_untracked", "facestream_tracked")
    ]


def view_rows(report: Report) -> list[str]:
    """The live view's cost: frames answered/s with and without a browser watching."""
    view = report["view"]
    rates, cpu = view["frames_per_s"], view["client_cpu_s_per_frame"]
    return [
        f"| video --view, {view['mode']} mode, frames answered/s without a page / with "
        f"Chromium watching | {rates['without_view']:.2f} / {rates['with_browser']:.2f} "
        f"({view['with_browser_vs_without']:.2f}x) |",
        f"| video --view, client CPU per frame without / with; Chromium's | "
        f"{1000 * cpu['without_view']:.1f} / {1000 * cpu['with_browser']:.1f} ms; "
        f"{1000 * view['browser_cpu_s_per_frame']:.1f} ms |",
    ]


def camera_rows(report: Report) -> list[str]:
    """Per mode: each step's cameras (held or not, frames/s, worst p99 and drops, the
    processes' shares of the cores), where a frame's time goes at the highest held step,
    and the dataflow's memory; then the peer's figure (bench/cameras.py)."""
    cameras = report["cameras"]
    rows = []
    for mode, figures in cameras["modes"].items():
        for step in figures["steps"]:
            shares = ", ".join(
                f"{group} {100 * share:.0f}%" for group, share in step["cpu_share"].items()
            )
            rows.append(
                f"| {mode}: {step['cameras']} camera(s) at {cameras['fps']:g} fps, "
                f"{cameras['step_seconds']:.0f} s: frames/s, worst p99, worst dropped; "
                f"cores used | {'held' if step['held'] else 'NOT held'}: "
                f"{step['frames_answered_per_s']:.1f}, {step['p99_s']:.2f} s, "
                f"{100 * step['dropped_share']:.1f}%; {shares} |"
            )
        at = figures["at_held"]
        if at:
            stages = ", ".join(
                f"{stage} {1000 * seconds:.0f}"
                for stage, seconds in at["dataflow_stage_s_per_frame"].items()
                if seconds is not None
            )
            cpu = ", ".join(
                f"{group} {1000 * seconds:.0f}"
                for group, seconds in at["cpu_s_per_frame"].items()
                if seconds is not None
            )
            rows.append(
                f"| {mode}, {at['cameras']} camera(s): ms per frame in the dataflow's stages; "
                f"CPU ms per frame by process | {stages}; {cpu} |"
            )
        for video, agreement in figures["tracker_detection"].items():
            rows.append(
                f"| {mode}, {video} video: the tracker's detection vs every frame searched "
                f"whole: faces found, labels equal | {agreement['faces']} faces, "
                f"{100 * agreement['found_share']:.1f}% found, "
                f"{100 * agreement['labels_equal_share']:.1f}% equal |"
            )
        rows.append(
            f"| {mode}: dataflow memory at its first start (with its conversion children) / steady "
            "(peak) | "
            f"{figures['first_start_peak_rss_mb']:,.0f} / {figures['steady_peak_rss_mb']:,.0f} "
            f"MB ({figures['first_start_s']:.0f} s to its first answer) |"
        )
    peer = cameras["peer"]
    rows.append(
        f"| strongest peer ({peer['peer']}, {peer['from']}): sampled frames/s, cameras | "
        f"{peer['frames_per_s']:.2f}, {peer['cameras']:.2f} |"
    )
    return rows


def shape_rows(report: Report) -> list[str]:
    """The dataflow shapes' lines of the measures table, and the ceiling in their rotation."""
    shapes = report["shapes"]
    ceiling = shapes["ceiling_exact"]
    return [
        *(
            f"| facestream {shape['label']}, exact (shapes interleaved, each started for its "
            "run)"
            + "".join(f", {key}={value}" for key, value in shape.get("env", {}).items())
            + f" | {rate(shape['saturated'])}, peak RSS {max(shape['peak_rss_mb']):.0f} MB |"
            for shape in shapes["layouts"].values()
        ),
        f"| ceiling, exact mode, in the shapes' rotation (runs: "
        f"{', '.join(f'{v:.2f}' for v in ceiling['runs'])}) | {ceiling['faces_per_s']:.2f} "
        "faces/s |",
    ]


def stage_rows(report: Report) -> list[str]:
    """The photos' seconds per face in detection and in analysis, on each side."""
    stages = report["stages"]

    def per_face(entry: dict[str, float], frames: dict[str, float]) -> str:
        scale = frames["count"] / frames["faces"]
        return f"{entry['detect_s'] * scale:.3f} / {entry['analyze_s'] * scale:.3f} s"

    exact = stages["exact"]
    return [
        f"| photos, s per face in detection / analysis (in process): peer (DeepFace's "
        f"extract_faces; analyze minus it) | {per_face(exact['peer'], exact['frames'])} |",
        *(
            f"| same, facestream {mode} ({report['precision'][mode]}) | "
            f"{per_face(stages[mode]['facestream_untracked'], stages[mode]['frames'])} |"
            for mode in stages
        ),
    ]


def ceiling_rows(report: Report) -> list[str]:
    return [
        f"| ceiling, {mode} mode: in-process extraction + batched analysis (alone) | "
        f"{entry['faces_per_s']:.2f} faces/s |"
        for mode, entry in report["ceiling"].items()
    ]


def engine_rows(report: Report) -> list[str]:
    return [
        f"| VGG trunk + heads, {name.replace('_', ' ')}, batch {report['batch_size']} | "
        f"{e['s_per_face']:.3f} s/face, {e['gflops']:.0f} GFLOP/s"
        + (
            f" ({100 * e['share_of_peak']:.0f}% of ~{e['peak_gflops']:.0f})"
            if e["peak_gflops"]
            else ""
        )
        + " |"
        for name, e in report["engines"].items()
    ]


def embedding_rows(report: Report) -> list[str]:
    """The embedding's cost: seconds per face, in process (bench/embedding.py)."""
    e = report["embedding"]
    s = e["s_per_face"]
    return [
        f"| analysis per face, {e['engine']}, batches of {report['batch_size']} ({e['faces']} "
        f"faces): four attributes / with the embedding (trunk shared by {e['shared']}) | "
        f"{s['attributes']:.3f} / {s['with_embedding']:.3f} s |",
        f"| detection + attributes + embedding per face: peer's represent + analyze per image / "
        f"facestream | {s['peer']:.3f} / {s['ours']:.3f} s |",
        f"| detection + analysis per face, facestream: four attributes / with the embedding | "
        f"{s['ours_attributes']:.3f} / {s['ours']:.3f} s "
        f"({100 * e['embedding_extra_end_to_end']:+.1f}%) |",
        *(
            f"| embedding, OpenVINO {precision} vs fp32: cosine similarity, lowest / median | "
            f"{a['min']:.5f} / {a['median']:.5f} |"
            for precision, a in e["agreement"].items()
        ),
    ]


def recognition_rows(report: Report) -> list[str]:
    """Identification against the gallery, and the peers on the same vectors, per face
    (bench/recognition.py)."""
    r = report["recognition"]
    s, peers = r["s_per_face"], r["peers"]
    gallery = f"{r['gallery_faces']:,} faces ({r['identities']:,} identities)"
    return [
        f"| enrolment of precomputed embeddings, {gallery} | {r['enrol_faces_per_s']:.0f} "
        f"faces/s; the gallery's copy loaded in {r['copy_load_s']:.2f} s |",
        f"| per face: analysis (every action) / identification, batches of "
        f"{report['batch_size']} / one face alone, {gallery} | {1000 * s['analysis']:.1f} / "
        f"{1000 * s['identify']:.2f} / {1000 * s['alone']:.2f} ms |",
        f"| per query face, {gallery}: DeepFace.search (sqlite, exact) / DeepFace.find, "
        f"less their represent ({1000 * peers['s_per_call']['represent']:.0f} ms) | "
        f"{1000 * peers['search_s_per_face']:.0f} / {1000 * peers['find_s_per_face']:.0f} ms |",
        f"| bytes per enrolled face: facestream's store (table and indexes) / DeepFace's sqlite "
        f"| {r['store_bytes_per_face']:,.0f} / {peers['sqlite_bytes_per_face']:,.0f} |",
    ]


def recognition_scale_rows(report: Report) -> list[str]:
    """Large galleries (codes, then exact ranking), and the peers where they run
    (bench/recognition_scale.py)."""
    r = report["recognition_scale"]
    rows = [
        f"| enrolment into the store, {r['enrolled']:,} faces | "
        f"{r['enrol_faces_per_s']:.0f} faces/s |"
    ]
    for size, at in sorted(r["sizes"].items(), key=lambda item: int(item[0])):
        alone, busy = at["alone"], at["under_load"]
        exact = (
            f"; exact in the copy p50 {at['exact_copy']['p50_ms']:.1f} ms"
            if "exact_copy" in at
            else ""
        )
        rows.append(
            f"| {int(size):,} faces: query p50 / p99 alone, under analysis load; recall@1, "
            f"top-5 | {alone['p50_ms']:.1f} / {alone['p99_ms']:.1f} ms, "
            f"{busy['p50_ms']:.1f} / {busy['p99_ms']:.1f} ms; {at['recall_at_1']:.3f}, "
            f"{at['top5_overlap']:.3f}{exact} |"
        )
        rows.append(
            f"| {int(size):,} faces: bytes per face in the store / in a process's copy; the "
            f"copy's first load | {at['bytes_per_face']:,.0f} / {at['copy_bytes_per_face']:,.0f}"
            f" B; {at['copy_load_s']:.2f} s |"
        )
    hnsw = r["pgvector_hnsw"]
    rows.append(
        f"| pgvector HNSW on binary codes ({hnsw['options']}), largest gallery: build, bytes "
        f"per face, enrolment while maintained | {hnsw['build_s']:.0f} s, "
        f"{hnsw['index_bytes'] / r['enrolled']:,.0f} B, {hnsw['enrol_faces_per_s']:.0f} faces/s |"
    )
    for search in hnsw["searches"]:
        rows.append(
            f"| pgvector HNSW, {search['candidates']} candidates ranked, ef_search "
            f"{search['ef_search']}: p50 / p99; recall@1 | {search['p50_ms']:.1f} / "
            f"{search['p99_ms']:.1f} ms; {search['recall_at_1']:.3f} |"
        )
    for size, peer in r["peers"].items():
        rows.append(
            f"| {int(size):,} faces, DeepFace per query less represent: search exact / ann "
            f"(build_index {peer['build_index_s']:.1f} s) / find | "
            f"{1000 * peer['search_s_per_face']:.0f} / {1000 * peer['ann_s_per_face']:.0f} / "
            f"{1000 * peer['find_s_per_face']:.0f} ms |"
        )
    million = r["million_on_paper"]
    rows.append(
        f"| 1,000,000 faces on paper: query p50 / p99, store bytes, copy bytes, enrolment | "
        f"{million['query_p50_ms']:.0f} / {million['query_p99_ms']:.0f} ms, "
        f"{million['bytes'] / 1e9:.1f} GB, {million['copy_bytes'] / 1e6:.0f} MB, "
        f"{million['enrol_s'] / 60:.0f} min |"
    )
    return rows


def ingest_rows(report: Report) -> list[str]:
    ingest = report["ingest"]
    return [
        f"| Submit, {ingest['image_bytes'] // 1024} KB images | "
        f"{ingest['submit_req_per_s']:.0f} req/s (p50 {ingest['submit_p50_ms']:.1f}"
        f" ms, p99 {ingest['submit_p99_ms']:.1f} ms) |",
        f"| SubmitStream (bulk), {ingest['streams']} streams | "
        f"{ingest['submit_stream_req_per_s']:.0f} req/s |",
        f"| raw confluent-kafka producer, same records | "
        f"{ingest['raw_producer_records_per_s']:.0f} records/s |",
    ]


def di_rows(report: Report) -> list[str]:
    di = report["di"]
    return [
        f"| DI: operator's bound singletons vs direct call, per message | "
        f"+{di['extra_per_message_us']:.3f} us (container lookup per message would be "
        f"{di['resolve_per_message_us']:.1f} us) |"
    ]


def pipeline_parts_rows(report: Report) -> list[str]:
    from bench.pipeline_parts import parts_rows

    return parts_rows(report["pipeline_parts"])


def overlap_rows(report: Report) -> list[str]:
    from bench.overlap import overlap_rows as rows

    return rows(report["overlap"])


# Each section's rows in the measures table, in the run's order.
SECTION_ROWS: dict[str, Callable[[Report], list[str]]] = {
    "ceiling": ceiling_rows,
    "headline": headline_rows,
    "shapes": shape_rows,
    "cameras": camera_rows,
    "view": view_rows,
    "stages": stage_rows,
    "crops": crop_rows,
    "video": video_rows,
    "video_stages": video_stage_rows,
    "embedding": embedding_rows,
    "recognition": recognition_rows,
    "recognition_scale": recognition_scale_rows,
    "engines": engine_rows,
    "ingest": ingest_rows,
    "di": di_rows,
    "pipeline_parts": pipeline_parts_rows,
    "overlap": overlap_rows,
}


def machine_line(report: Report) -> str:
    """The machine, engine, precisions, weights, images and run sizes of the run."""
    precision = report["precision"]
    return (
        f"Machine: {report['machine']}; engine: {report['engine']} ({precision['exact']} exact, "
        f"{precision['fast']} fast); weights: {weights_label(report)}; images: "
        f"{report['image_count']} {report['images']}; medians of {report['repeat']} interleaved "
        f"runs of {report['rounds']} passes, {report['concurrency']} calls in flight."
    )


def table(report: Report) -> str:
    """The run as markdown: the machine, the measures of every section it has, the sections
    that failed or were skipped with the reason, then each target with its value."""
    status = report["sections"]
    measures = [
        row
        for name, rows in SECTION_ROWS.items()
        if status.get(name, {}).get("status") == "ok"
        for row in rows(report)
    ]
    lines = [machine_line(report), "", "| measure | value |", "|---|---|", *measures]
    failed = {name: s for name, s in status.items() if s["status"] != "ok"}
    if failed:
        lines += ["", "| section not measured | why |", "|---|---|"]
        for name, s in failed.items():
            reason = s.get("error", "").strip().splitlines()
            lines.append(f"| {name} ({s['status']}) | {reason[-1] if reason else ''} |")
    lines += ["", *target_rows(report["ratios"], status)]
    lines.append(
        f"({report['seconds'] / 60:.0f} min; latest.json has every figure and each section's "
        "status.)"
    )
    return "\n".join(lines)
