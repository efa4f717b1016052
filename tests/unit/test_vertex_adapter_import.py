"""Cold starts stay cheap: importing the Vertex adapter does not import aiplatform."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
import registrar.adapters.vertex as vertex
heavy = sorted(m for m in sys.modules if m.startswith(("google.cloud.aiplatform", "vertexai")))
assert not heavy, heavy
registry = vertex.VertexModelRegistry("p", "us-central1", api_endpoint="http://127.0.0.1:9")
assert "google.cloud.aiplatform_v1" not in sys.modules, "the constructor must not create the client"
print("ok")
"""


def test_importing_the_vertex_adapter_does_not_import_aiplatform():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": f"{ROOT / 'functions'}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
