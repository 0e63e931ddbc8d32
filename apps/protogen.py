"""Generate the Python stubs of `facestream.v1` from the .proto sources in proto/."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from grpc_tools import protoc

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = PROJECT_ROOT / "proto"
PROTO_FILES = ("facestream/v1/records.proto", "facestream/v1/analyze_service.proto")


def generate_stubs(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Write `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` for every proto file under out_dir.

    The stubs land in `out_dir/facestream/v1/`, mirroring the proto package, so that their
    imports (`from facestream.v1 import records_pb2`) resolve in the installed package.
    Returns the generated files; raises RuntimeError with protoc's exit code on failure.
    """
    well_known = files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"--proto_path={proto_root}",
        f"--proto_path={well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *PROTO_FILES,
    ]
    code = protoc.main(args)
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code} for {', '.join(PROTO_FILES)}")
    return sorted((out_dir / "facestream" / "v1").glob("*_pb2*.py*"))


if __name__ == "__main__":
    for path in generate_stubs(PROJECT_ROOT):
        print(f"generated {path.relative_to(PROJECT_ROOT)}")
