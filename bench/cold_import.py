"""Cold import of functions/main.py against functions_framework + google.cloud.firestore alone.

Each measurement is a fresh interpreter (`python -c ...`); both candidates are measured in the same run,
interleaved, so machine noise hits them alike. Prints import time (inside the process) and the whole process
wall time, median and p90, and which heavy modules `import main` loaded (aiplatform / TensorFlow must not be).

    .venv/bin/python bench/cold_import.py [-n 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import ROOT, median, percentile, table

PROBE = """
import json, sys, time
t = time.perf_counter()
{imports}
elapsed = time.perf_counter() - t
heavy = {{name: any(m == name or m.startswith(name + ".") for m in sys.modules) for name in {heavy!r}}}
print(json.dumps({{"seconds": elapsed, "modules": len(sys.modules), "heavy": heavy}}))
"""
HEAVY = ["google.cloud.aiplatform", "tensorflow", "google.cloud.firestore", "grpc", "google.cloud.pubsub_v1",
         "jsonschema", "flask"]
CANDIDATES = {
    "import main (functions/)": "import main",
    "functions_framework + google.cloud.firestore": "import functions_framework\nimport google.cloud.firestore",
    "functions_framework alone": "import functions_framework",
}


def run_once(imports: str) -> tuple[dict, float]:
    code = PROBE.format(imports=imports, heavy=HEAVY)
    start = time.perf_counter()
    # No PYTHONDONTWRITEBYTECODE: any value of it (even "0") stops .pyc files being written, and then every sample
    # would compile main.py from source while the libraries it is compared with load precompiled.
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "functions", capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"})
    wall = time.perf_counter() - start
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="fresh processes per candidate (default 10)")
    args = parser.parse_args()

    for imports in CANDIDATES.values():  # warm the page cache and .pyc files once; not counted
        run_once(imports)
    samples = {name: [] for name in CANDIDATES}
    heavy = {}
    for _ in range(args.n):
        for name, imports in CANDIDATES.items():
            result, wall = run_once(imports)
            samples[name].append((result["seconds"], wall, result["modules"]))
            heavy[name] = result["heavy"]

    rows = []
    for name, values in samples.items():
        imp = [v[0] * 1000 for v in values]
        wall = [v[1] * 1000 for v in values]
        rows.append([name, median(imp), percentile(imp, 90), median(wall), percentile(wall, 90), values[-1][2]])
    print(table(["candidate", "import ms p50", "import ms p90", "process ms p50", "process ms p90", "modules"],
                rows, title=f"Cold import, {args.n} fresh processes each ({sys.executable})"))
    main_p50 = rows[0][1]
    base_p50 = rows[1][1]
    print(f"\nratio import main / (functions_framework + firestore): {main_p50 / base_p50:.2f} (median import time)")
    print(f"ratio of process wall time:                              {rows[0][3] / rows[1][3]:.2f}")
    print()
    print(table(["module", "loaded by `import main`"], [[m, "yes" if heavy[next(iter(CANDIDATES))][m] else "no"]
                                                      for m in HEAVY]))
    bad = [m for m in ("google.cloud.aiplatform", "tensorflow") if heavy[next(iter(CANDIDATES))][m]]
    if bad:
        print(f"\nVIOLATION (ARCHITECTURE.md §3.7): import main loaded {', '.join(bad)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
