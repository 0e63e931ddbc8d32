"""Following faces across the frames of one stream: which face of a frame is which face of
the frames before it, and when a face must be analysed again. Pure logic, free of Bytewax:
the dataflow keeps a `StreamTracks` per (principal, stream) in its keyed state
(`dataflow.tracking_steps`).

A track is one face followed from frame to frame. Each frame's faces are matched to the
stream's open tracks by the overlap of their boxes (intersection over union) with where
each track is expected (its last box moved on at its last speed, as SORT predicts it, so
that a face crossing the picture quickly keeps its track): the pairs that overlap most
first, each track and each face at most once, no pair under `min_overlap`. A face that
matches no track opens one; a track that no face matched for more than `max_missed`
frames in a row ends, and every track ends with the stream's last frame.

Track ids are `t1`, `t2`, ... in the order tracks open in their stream, and the matching
depends on the frames alone (ties go to the lower face index, then the older track), so
the same frames give the same ids, after a replay from a snapshot too.

A face is analysed when its track opens, and again once `reanalyse_after_ms` of stream
time (the frames' positions, never the wall clock) has passed since the track's last
analysis, or when its box grew or shrank by more than `max_resize`, or moved by more than
`max_move`, of the analysed box's size; otherwise it carries its track's last attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


@dataclass(frozen=True)
class FramePoint:
    """Where a frame is: its sequence in the stream, its index and position in the source."""

    sequence: int
    frame_index: int = 0
    position_ms: int = 0


@dataclass(frozen=True)
class TrackingPolicy:
    """When faces are the same face, and when one is analysed again."""

    min_overlap: float = 0.3  # IoU under which a face is not its track's
    max_missed: int = 5  # sampled frames a track may miss before it ends
    reanalyse_after_ms: int = 2000  # stream time between two analyses of a track
    max_resize: float = 0.25  # of the analysed box's size: grown or shrunk more, analyse again
    max_move: float = 1.0  # of the analysed box's size: moved further, analyse again
    max_tracks: int = 32  # open tracks per stream; faces beyond are analysed untracked


@dataclass
class Track:
    """A face followed across frames, and the frame its attributes come from."""

    track_id: str
    box: Box  # where it was last seen
    first: FramePoint
    last: FramePoint
    analysed_box: Box
    analysed_sequence: int
    analysed_at_ms: int
    missed: int = 0  # frames in a row without it
    seen: int = 1  # frames it was in
    analysed: int = 1  # of those, frames it was analysed in
    largest: Box = (0, 0, 0, 0)  # its largest box (by area) so far
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame, from its last two boxes

    def __post_init__(self) -> None:
        if self.largest == (0, 0, 0, 0):
            self.largest = self.box


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
            (-box_overlap(expected_box(track), box), index, _opening_order(track_id), track_id)
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


def expected_box(track: Track) -> Box:
    """Where the track's face should be in the next frame: its last box, moved on at its
    last speed for the frames since it was seen."""
    frames = track.missed + 1
    dx, dy = (round(speed * frames) for speed in track.velocity)
    x, y, w, h = track.box
    return (x + dx, y + dy, w, h)


def _opening_order(track_id: str) -> int:
    return int(track_id.removeprefix("t"))


def needs_analysis(track: Track, box: Box, position_ms: int, policy: TrackingPolicy) -> bool:
    """Whether the face at `box` may have changed since its track was last analysed: enough
    stream time passed, the box grew or shrank beyond `max_resize`, or moved beyond
    `max_move`."""
    if position_ms - track.analysed_at_ms >= policy.reanalyse_after_ms:
        return True
    x, y, w, h = track.analysed_box
    size = max(w, h, 1)
    grew = abs(max(box[2], box[3]) - size) / size
    moved = max(abs(box[0] + box[2] / 2 - x - w / 2), abs(box[1] + box[3] / 2 - y - h / 2))
    return grew > policy.max_resize or moved / size > policy.max_move


def follow(
    state: StreamTracks,
    point: FramePoint,
    boxes: Sequence[Box],
    last: bool,
    policy: TrackingPolicy,
) -> tuple[list[FaceDecision], list[Track]]:
    """Take one frame's faces (its boxes, in the frame's face order) into the stream's
    state: a decision per face, and the tracks that ended with this frame."""
    sequence, position_ms = point.sequence, point.position_ms
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
            state.tracks[track_id] = Track(track_id, box, point, point, box, sequence, position_ms)
            decisions.append(FaceDecision(index, track_id, analyse=True))
            continue
        track = state.tracks[track_id]
        analyse = needs_analysis(track, box, position_ms, policy)
        if analyse:
            track.analysed_box, track.analysed_sequence = box, sequence
            track.analysed_at_ms = position_ms
            track.analysed += 1
        carried = None if analyse else track.analysed_sequence
        frames = track.missed + 1
        track.velocity = (
            (box[0] + box[2] / 2 - track.box[0] - track.box[2] / 2) / frames,
            (box[1] + box[3] / 2 - track.box[1] - track.box[3] / 2) / frames,
        )
        track.box, track.last, track.missed = box, point, 0
        track.seen += 1
        if box[2] * box[3] > track.largest[2] * track.largest[3]:
            track.largest = box
        decisions.append(FaceDecision(index, track_id, analyse, carried))
    seen = {d.track_id for d in decisions}
    for track in state.tracks.values():
        if track.track_id not in seen:
            track.missed += 1
    ended = [t for t in state.tracks.values() if last or t.missed > policy.max_missed]
    for track in ended:
        del state.tracks[track.track_id]
    return decisions, ended


def close(state: StreamTracks) -> list[Track]:
    """End every open track (the stream went idle); the tracks, oldest first."""
    ended = sorted(state.tracks.values(), key=lambda track: _opening_order(track.track_id))
    state.tracks.clear()
    return ended
