#!/usr/bin/env bash
# CI step: the TFX pipeline's own environment and tests (slow ones included), and the serving images' tests.
# Run from the repository root:  bash .ci/pipeline.sh
# Idempotent: the venv is created once and reinstalled only when pipeline/requirements.txt changes.
set -euo pipefail

VENV="${PIPELINE_VENV:-.venv-pipeline}"
REQ="pipeline/requirements.txt"

if [ ! -f "$REQ" ] || [ ! -d pipeline/tests ]; then
  echo "pipeline.sh: run me from the repository root (missing $REQ or pipeline/tests)" >&2
  exit 2
fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "pipeline.sh: python3 is missing; install Python 3.11 with the venv module (Debian: apt-get install python3 python3-venv)" >&2
  exit 2
fi
if ! python3 -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "pipeline.sh: warning: TFX 1.16 is pinned and tested on Python 3.11; found $(python3 --version 2>&1)" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "pipeline.sh: creating $VENV"
  python3 -m venv "$VENV" || { echo "pipeline.sh: 'python3 -m venv' failed (Debian: apt-get install python3-venv)" >&2; exit 2; }
fi

STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  echo "pipeline.sh: installing $REQ into $VENV (3-4 minutes the first time)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check pip==24.2
  # tfx 1.16 declares Python < 3.11 but works on 3.11 with these pins.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --ignore-requires-python -r "$REQ"
  "$VENV/bin/python" -m pip check
  echo "$WANT" > "$STAMP"
else
  echo "pipeline.sh: $VENV is up to date with $REQ"
fi

if [ "${PIPELINE_INSTALL_ONLY:-}" = "1" ]; then
  echo "pipeline.sh: $VENV is ready"
  exit 0
fi

export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=2
# Never publish test events to a developer's running emulator.
unset PUBSUB_EMULATOR_HOST

# Two runs, each with its own pytest config: pipeline/pytest.ini and serving_images/pytest.ini (the serving images'
# tests use this venv too: the ScaNN server shares it locally).
run_suite() {  # $1: label, then pytest arguments
  local label=$1 rc
  shift
  set +e
  "$VENV/bin/python" -m pytest "$@" -q -p no:cacheprovider
  rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then
    echo "pipeline.sh: no $label tests were collected: the $label test suite is broken" >&2
    exit 1
  fi
  if [ "$rc" -ne 0 ]; then
    echo "pipeline.sh: $label tests failed (pytest exit $rc)" >&2
    exit "$rc"
  fi
  echo "pipeline.sh: $label tests passed"
}

run_suite pipeline pipeline/tests -m "slow or not slow"
run_suite "serving image" serving_images
