"""Following faces across the frames of one stream: which face of a frame is which face of
the frames before it, and when a face must be analysed again. Pure logic, free of Bytewax:
the dataflow keeps a `StreamTracks` per (principal, stream) in its keyed state (issue 23).

A track is one face followed from frame to frame. Each frame's faces are matched to the
stream's open tracks by the overlap of their boxes (intersection over union): the pairs
that overlap most first, each track and each face at most once, no pair under
`min_overlap`. A face that matches no track opens one; a track that no face matched for
more than `max_missed` frames in a row ends, and every track ends with the stream's last
frame.

Track ids are `t1`, `t2`, ... in the order tracks open in their stream, and the matching
depends on the frames alone (ties go to the lower face index, then the older track), so
the same frames give the same ids, after a replay from a snapshot too.

A face is analysed when its track opens, and again once `reanalyse_after_ms` of stream
time (the frames' positions, never the wall clock) has passed since the track's last
analysis, or when its box changed size, or moved, by more than `max_change` of the
analysed box's size; otherwise it carries its track's last attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


@dataclass(frozen=True)
class TrackingPolicy:
    """When faces are the same face, and when one is analysed again."""

    min_overlap: float = 0.3  # IoU under which a face is not its track's
    max_missed: int = 5  # sampled frames a track may miss before it ends
    reanalyse_after_ms: int = 2000  # stream time between two analyses of a track
    max_change: float = 0.25  # of the analysed box's size: more size or move, analyse again
    max_tracks: int = 32  # open tracks per stream; faces beyond are analysed untracked


@dataclass
class Track:
    """A face followed across frames, and the frame its attributes come from."""

    track_id: str
    box: Box  # where it was last seen
    first_sequence: int
    last_sequence: int
    analysed_box: Box
    analysed_sequence: int
    analysed_at_ms: int
    missed: int = 0  # frames in a row without it


@dataclass
class StreamTracks:
    """The open tracks of one stream, and how many it has opened (for the next id)."""

    opened: int = 0
    tracks: dict[str, Track] = field(default_factory=dict)


@dataclass(frozen=True)
class FaceDecision:
    """What to do with face `index` of a frame: its track, and whether to analyse it or to
    carry the attributes of frame `carried_from`. An untracked face (the stream holds
    `max_tracks` already) has no track id and is analysed."""

    index: int
    track_id: str
    analyse: bool
    carried_from: int | None = None


def box_overlap(a: Box, b: Box) -> float:
    """Intersection over union of two boxes: 0 apart, 1 the same."""
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match_faces(
    tracks: Mapping[str, Track], boxes: Sequence[Box], min_overlap: float
) -> dict[int, str]:
    """Face index -> track id for the faces that are an open track's face: greedily, the
    pairs of most overlap first (ties: lower face index, then older track)."""
    pairs = sorted(
        (
            (-box_overlap(track.box, box), index, _opening_order(track_id), track_id)
            for track_id, track in tracks.items()
            for index, box in enumerate(boxes)
        ),
    )
    matched: dict[int, str] = {}
    taken: set[str] = set()
    for negative_overlap, index, _order, track_id in pairs:
        if -negative_overlap < min_overlap:
            break
        if index in matched or track_id in taken:
            continue
        matched[index] = track_id
        taken.add(track_id)
    return matched


def _opening_order(track_id: str) -> int:
    return int(track_id.removeprefix("t"))


def needs_analysis(track: Track, box: Box, position_ms: int, policy: TrackingPolicy) -> bool:
    """Whether the face at `box` may have changed since its track was last analysed: enough
    stream time passed, or the box grew, shrank or moved beyond `max_change`."""
    if position_ms - track.analysed_at_ms >= policy.reanalyse_after_ms:
        return True
    x, y, w, h = track.analysed_box
    size = max(w, h, 1)
    grew = abs(max(box[2], box[3]) - size) / size
    moved = max(abs(box[0] + box[2] / 2 - x - w / 2), abs(box[1] + box[3] / 2 - y - h / 2))
    return grew > policy.max_change or moved / size > policy.max_change


def follow(
    state: StreamTracks,
    sequence: int,
    position_ms: int,
    boxes: Sequence[Box],
    last: bool,
    policy: TrackingPolicy,
) -> tuple[list[FaceDecision], list[Track]]:
    """Take one frame's faces (its boxes, in the frame's face order) into the stream's
    state: a decision per face, and the tracks that ended with this frame."""
    matched = match_faces(state.tracks, boxes, policy.min_overlap)
    decisions = []
    for index, box in enumerate(boxes):
        track_id = matched.get(index)
        if track_id is None:
            if len(state.tracks) >= policy.max_tracks:
                decisions.append(FaceDecision(index, "", analyse=True))
                continue
            state.opened += 1
            track_id = f"t{state.opened}"
            state.tracks[track_id] = Track(
                track_id, box, sequence, sequence, box, sequence, position_ms
            )
            decisions.append(FaceDecision(index, track_id, analyse=True))
            continue
        track = state.tracks[track_id]
        analyse = needs_analysis(track, box, position_ms, policy)
        if analyse:
            track.analysed_box, track.analysed_sequence = box, sequence
            track.analysed_at_ms = position_ms
        carried = None if analyse else track.analysed_sequence
        track.box, track.last_sequence, track.missed = box, sequence, 0
        decisions.append(FaceDecision(index, track_id, analyse, carried))
    seen = {d.track_id for d in decisions}
    for track in state.tracks.values():
        if track.track_id not in seen:
            track.missed += 1
    ended = [t for t in state.tracks.values() if last or t.missed > policy.max_missed]
    for track in ended:
        del state.tracks[track.track_id]
    return decisions, ended
