#!/usr/bin/env bash
# Terraform checks that need no cloud and no provider plugins:
#   1. terraform fmt -check -recursive terraform/
#   2. checkov over terraform/ with zero failed checks (skips only in place, each with its reason)
#   3. the HCL consistency test (tests/terraform): Terraform agrees with schemas/topology.json and functions/main.py
# Run from anywhere; works from the repository root. Exits non-zero on the first failing step.
set -uo pipefail
cd "$(dirname "$0")/.."

fail() { echo "terraform checks: $*" >&2; exit 1; }
step() { echo; echo "--- $* ---"; }

missing=()
command -v terraform >/dev/null || missing+=("terraform (1.5+; only fmt is used, no providers are downloaded)")
command -v python3 >/dev/null || missing+=("python3 (3.11+)")
[ -x .venv/bin/python ] || missing+=(".venv (run: make setup)")
[ ${#missing[@]} -eq 0 ] || fail "missing: ${missing[*]}"

step "terraform fmt -check -recursive terraform/"
terraform fmt -check -recursive -diff terraform/ || fail "terraform fmt found unformatted files (run: terraform fmt -recursive terraform/)"

step "checkov"
requirements=terraform/requirements-checks.txt
stamp=.venv-tools/.installed
if [ ! -x .venv-tools/bin/checkov ] || ! cmp -s "$requirements" "$stamp"; then
  python3 -m venv .venv-tools || fail "could not create .venv-tools"
  .venv-tools/bin/pip install --quiet --disable-pip-version-check -r "$requirements" || fail "could not install checkov from $requirements"
  cp "$requirements" "$stamp"
fi
# --skip-download: no calls to the vendor's platform; results come from the bundled checks only.
.venv-tools/bin/checkov -d terraform --quiet --compact --framework terraform --skip-download
rc=$?
[ "$rc" -eq 0 ] || fail "checkov reported failed checks (exit $rc)"

step "HCL consistency test (tests/terraform)"
.venv/bin/python -m pytest tests/terraform -q -p no:cacheprovider
rc=$?
[ "$rc" -ne 5 ] || fail "pytest collected no tests in tests/terraform"
[ "$rc" -eq 0 ] || fail "the consistency test failed (exit $rc)"

echo
echo "terraform checks: all passed"
