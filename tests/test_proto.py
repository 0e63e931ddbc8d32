"""The proto contract: committed stubs are fresh, records round-trip, the service has its RPCs."""

from __future__ import annotations

from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from apps.protogen import PROJECT_ROOT, generate_stubs
from facestream.v1 import analyze_service_pb2, records_pb2

COMMITTED = PROJECT_ROOT / "facestream" / "v1"


def test_committed_stubs_match_the_proto_sources(tmp_path: Path):
    generated = generate_stubs(tmp_path)
    committed = sorted(COMMITTED.glob("*_pb2*.py*"))
    assert [p.name for p in generated] == [p.name for p in committed]
    stale = [p.name for p in generated if p.read_bytes() != (COMMITTED / p.name).read_bytes()]
    assert not stale, f"stale stubs {stale}: run `make proto` and commit the result"


def test_image_submitted_round_trips():
    submitted_at = Timestamp()
    submitted_at.FromSeconds(1_795_000_000)
    record = records_pb2.ImageSubmitted(
        request_id="r-1",
        image=b"\xff\xd8\xff",
        actions=["age", "race"],
        detector_backend="opencv",
        submitted_at=submitted_at,
    )
    parsed = records_pb2.ImageSubmitted.FromString(record.SerializeToString())
    assert parsed == record
    assert list(parsed.actions) == ["age", "race"]


def test_analysis_result_round_trips_with_optional_age():
    face = records_pb2.Face(
        region=records_pb2.Region(x=1, y=2, w=30, h=40),
        confidence=0.9,
        age=31.5,
        gender=records_pb2.Distribution(scores={"Man": 70.0, "Woman": 30.0}, dominant="Man"),
    )
    result = records_pb2.AnalysisResult(
        request_id="r-1",
        status=records_pb2.ANALYSIS_STATUS_OK,
        faces=[face],
        timings=records_pb2.StageTimings(detect=0.2, analyze=1.1, total=1.4),
        worker="host:1/worker-0",
        synthetic_weights=True,
    )
    parsed = records_pb2.AnalysisResult.FromString(result.SerializeToString())
    assert parsed == result
    assert parsed.faces[0].HasField("age")
    assert not records_pb2.Face().HasField("age"), "age must be absent when not requested"


def test_service_has_the_five_rpcs_with_their_streaming_shapes():
    service = analyze_service_pb2.DESCRIPTOR.services_by_name["AnalyzeService"]
    assert service.full_name == "facestream.v1.AnalyzeService"
    shapes = {
        m.name: (m.client_streaming, m.server_streaming, m.output_type.full_name)
        for m in service.methods
    }
    assert shapes == {
        "Submit": (False, False, "facestream.v1.SubmitReply"),
        "Analyze": (False, False, "facestream.v1.AnalysisResult"),
        "SubmitStream": (True, True, "facestream.v1.SubmitReply"),
        "WatchResults": (False, True, "facestream.v1.AnalysisResult"),
        "WatchStream": (False, True, "facestream.v1.AnalysisResult"),
    }
