"""Cold starts stay cheap (ARCHITECTURE.md §3.7): importing the functions' module, the wiring and every adapter
loads no aiplatform, no TensorFlow, no Cloud Run or Cloud Scheduler client. Each probe runs in a fresh interpreter."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("google.cloud.aiplatform", "vertexai", "tensorflow", "google.cloud.run_v2", "google.cloud.scheduler_v1",
         "google.cloud.storage")

PROBE = """
import sys
{imports}
heavy = sorted(m for m in sys.modules if m.startswith({heavy!r}))
assert not heavy, heavy
print("ok")
"""


def _probe(imports: str) -> subprocess.CompletedProcess:
    code = PROBE.format(imports=imports, heavy=HEAVY)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT / "functions", capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": f"{ROOT / 'functions'}:{ROOT}", "PATH": "/usr/bin:/bin"})


@pytest.mark.parametrize("imports", [
    "import main",
    "import main\nimport registrar.bootstrap, registrar.api.app",
    "import registrar.adapters.cloudrun",
    "import registrar.adapters.scheduler",
    "import registrar.adapters.pipelines",
    "import registrar.adapters.vertex",
    "import registrar.adapters.artifacts",
    "import registrar.adapters.model_server",
])
def test_import_loads_no_heavy_client(imports):
    result = _probe(imports)
    assert result.returncode == 0, f"{imports!r} loaded heavy modules:\n{result.stderr[-2000:]}"
    assert result.stdout.strip() == "ok"


def test_the_probe_would_notice_a_heavy_import():
    result = _probe("import google.cloud.storage")
    assert result.returncode != 0 and "google.cloud.storage" in result.stderr
