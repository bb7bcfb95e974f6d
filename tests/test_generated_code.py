"""Generated code is exactly what `protos/` produces (etcd's verify-genproto)."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATED = ROOT / "clients" / "python" / "hms" / "mgmt" / "v1"
BIN = Path(sys.executable).parent  # the generators installed beside this Python by the test extras


def test_generated_code_matches_the_protos(tmp_path: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in (PROTOS / "hms" / "mgmt" / "v1").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"--plugin=protoc-gen-mypy={BIN / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={BIN / 'protoc-gen-mypy_grpc'}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--mypy_out={tmp_path}",
            f"--mypy_grpc_out={tmp_path}",
            *sources,
        ],
        check=True,
        cwd=PROTOS,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            "--include_source_info",
            f"--descriptor_set_out={tmp_path / 'hms' / 'mgmt' / 'v1' / 'documented.binpb'}",
            *sources,
        ],
        check=True,
        cwd=PROTOS,
    )
    fresh = tmp_path / "hms" / "mgmt" / "v1"
    expected = sorted(p.name for p in fresh.iterdir())
    committed = sorted(
        p.name
        for p in GENERATED.iterdir()
        if p.suffix in (".py", ".pyi", ".binpb") and p.name != "__init__.py"
    )

    assert committed == expected, "generated files differ from protos/: run `make proto`"
    _, mismatch, errors = filecmp.cmpfiles(fresh, GENERATED, expected, shallow=False)
    assert not mismatch and not errors, f"stale or hand-edited: {mismatch + errors}; run `make proto`"


def test_every_proto_file_names_its_package_for_go_java_and_csharp() -> None:
    from google.protobuf import descriptor_pb2

    from control_plane.servicers.reflection import documented_files

    files = [descriptor_pb2.FileDescriptorProto.FromString(b) for b in documented_files().values()]

    assert sorted(f.name for f in files) == sorted(
        str(p.relative_to(PROTOS)) for p in (PROTOS / "hms" / "mgmt" / "v1").glob("*.proto")
    )
    for f in files:
        assert f.options.go_package.endswith("/hms/mgmt/v1;mgmtv1"), f.name
        assert f.options.java_package == "io.hms.mgmt.v1", f.name
        assert f.options.java_multiple_files, f.name
        assert f.options.csharp_namespace == "Hms.Mgmt.V1", f.name
