"""xds-protos installs a `cel` package, as the CEL library does, and a copy of opentelemetry-proto's modules:
the engine must work whichever owns `cel`, and the OTLP exporter must load beside the Envoy types."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cel.cel as cel_extension
import cel.expr

PROBE = """
from control_plane.core.workflow.expressions import compile_expression
import cel.expr.syntax_pb2
from envoy.config.cluster.v3 import cluster_pb2
print(compile_expression("input.a + 1").evaluate({"input": {"a": 41}}))
"""


def _shadow(tmp_path: Path, init_text: str) -> Path:
    """A `cel` package whose __init__ is `init_text`, holding the real extension and cel/expr."""
    package = tmp_path / "cel"
    package.mkdir()
    (package / "__init__.py").write_text(init_text)
    extension = Path(cel_extension.__file__ or "")
    (package / extension.name).symlink_to(extension)
    (package / "expr").symlink_to(Path(next(iter(cel.expr.__path__))))
    return tmp_path


def _run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        env={"PYTHONPATH": f"{path}:{Path.cwd()}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_engine_evaluates_when_xds_protos_owns_the_cel_package(tmp_path: Path) -> None:
    # xds-protos's cel/__init__.py is empty: `import cel; cel.compile` fails, cel.cel does not.
    result = _run(_shadow(tmp_path, ""))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_engine_evaluates_when_the_cel_library_owns_the_package(tmp_path: Path) -> None:
    result = _run(_shadow(tmp_path, "from .cel import *\n"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_the_otlp_exporter_loads_beside_the_envoy_types() -> None:
    """`make install` puts opentelemetry-proto's own modules back over xds-protos's older copy (seen
    failing before: ImportError InstrumentationScope, and every traced control plane refused to start)."""
    probe = (
        "from envoy.config.listener.v3 import listener_pb2\n"
        "from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter\n"
        "from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http\n"
        "print('ok')\n"
    )
    assert _printed_by(probe) == "ok"


def test_the_control_plane_loads_cel_without_the_librarys_command_line() -> None:
    """The CEL library's cel/__init__.py imports its CLI (typer, rich, prompt_toolkit): ~0.5 s of CPU per
    start that the engine does not use. cel_binding loads the extension alone; expressions still compile."""
    probe = (
        "import sys\n"
        "import control_plane.server\n"
        "from control_plane.core.workflow.expressions import compile_expression\n"
        "assert compile_expression('input.a * 2').evaluate({'input': {'a': 21}}) == 42\n"
        "print(sorted(name for name in ('cel.cli', 'typer', 'prompt_toolkit') if name in sys.modules))\n"
    )
    assert _printed_by(probe) == "[]"


def _printed_by(probe: str) -> str:
    """What `probe` prints, run by this environment's Python in a process of its own (fresh imports)."""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
