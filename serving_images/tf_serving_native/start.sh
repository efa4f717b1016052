#!/usr/bin/env bash
# Container entry point: fetch ONE versioned SavedModel directory from MODEL_PATH into
# ${MODELS_ROOT}/${MODEL_NAME}/${version}/, write a CPU batching config, exec tensorflow_model_server.
#
#   MODEL_NAME      model name in the REST URLs (/v1/models/${MODEL_NAME}:predict)            required
#   MODEL_PATH      the versioned directory holding saved_model.pb: gs://…/pushed_model/<version>/,
#                   a local path or file://…                                                  required
#   MODEL_VERSION   version directory name (TF Serving needs an integer); default: MODEL_PATH's last segment
#   PORT            REST port (Cloud Run sets it)                                             default 8080
#   GRPC_PORT       gRPC port                                                                 default 8500
#   MODELS_ROOT     where models are copied to                                                default /models
#   TF_SERVING_NUM_BATCH_THREADS / _MAX_BATCH_SIZE / _BATCH_TIMEOUT_MICROS / _MAX_ENQUEUED_BATCHES: batching
# Extra arguments are passed to tensorflow_model_server.
set -euo pipefail

die() { echo "start.sh: $*" >&2; exit 1; }

[ -n "${MODEL_NAME:-}" ] || die "MODEL_NAME is not set (the model name clients use in /v1/models/<name>)"
[ -n "${MODEL_PATH:-}" ] || die "MODEL_PATH is not set (the versioned SavedModel directory, e.g. gs://bucket/pushed_model/1700000000/)"
case "$MODEL_NAME" in */*|*:*|*" "*) die "MODEL_NAME='$MODEL_NAME' may not contain '/', ':' or spaces" ;; esac

src="${MODEL_PATH%/}"
src="${src#file://}"
PORT="${PORT:-8080}"
GRPC_PORT="${GRPC_PORT:-8500}"
[ "$PORT" != "$GRPC_PORT" ] || die "PORT and GRPC_PORT are both $PORT"
MODELS_ROOT="${MODELS_ROOT:-/models}"

unversioned_hint() {  # $1: paths of MODEL_PATH's children, one per line
  local versions latest
  versions=$(printf '%s\n' "$1" | sed -e 's#/$##' -e 's#.*/##' | grep -E '^[0-9]+$' | sort -n || true)
  if [ -n "$versions" ]; then
    latest=$(printf '%s\n' "$versions" | tail -n 1)
    echo "; MODEL_PATH looks like the unversioned parent (it holds version directories: $(echo $versions)):" \
      "point it at one version, e.g. ${MODEL_PATH%/}/${latest}/"
  fi
}

case "$src" in
  gs://*)
    if command -v gcloud >/dev/null 2>&1; then lister=(gcloud storage ls); copier=(gcloud storage cp -r)
    elif command -v gsutil >/dev/null 2>&1; then lister=(gsutil ls); copier=(gsutil -m cp -r)
    else die "MODEL_PATH is on GCS ($MODEL_PATH) but neither gcloud nor gsutil is installed"; fi
    if ! "${lister[@]}" "${src}/saved_model.pb" >/dev/null 2>&1; then
      die "${src}/saved_model.pb not found$(unversioned_hint "$("${lister[@]}" "${src}/" 2>/dev/null || true)")"
    fi ;;
  *://*) die "MODEL_PATH scheme not supported: $MODEL_PATH (use gs://, file:// or a local path)" ;;
  *)
    [ -d "$src" ] || die "MODEL_PATH ${MODEL_PATH} is not a directory (or does not exist)"
    if [ ! -f "${src}/saved_model.pb" ]; then
      die "${src}/saved_model.pb not found$(unversioned_hint \
        "$(find "$src" -mindepth 2 -maxdepth 2 -name saved_model.pb -printf '%h\n' 2>/dev/null || true)")"
    fi ;;
esac

version="${MODEL_VERSION:-${src##*/}}"
case "$version" in
  ''|*[!0-9]*) die "model version '$version' is not an integer: TF Serving only loads integer version directories (set MODEL_VERSION or use a MODEL_PATH ending in /<version>/)" ;;
esac
dest="${MODELS_ROOT}/${MODEL_NAME}/${version}"
rm -rf "$dest"
mkdir -p "$dest"
case "$src" in
  gs://*) "${copier[@]}" "${src}/*" "$dest/" || die "copying ${src} to ${dest} failed" ;;
  *) cp -R "${src}/." "$dest/" || die "copying ${src} to ${dest} failed" ;;
esac
[ -f "${dest}/saved_model.pb" ] || die "${dest}/saved_model.pb missing after copying ${MODEL_PATH}"

# CPU batching per TF Serving's batching guide ("CPU-only: one approach"): one batch thread per core, no batching
# timeout to start with, and as many enqueued batches as threads for online serving (queueing delay stays bounded;
# Cloud Run routes the overflow to other instances). max_batch_size bounds one request's instances too.
threads="${TF_SERVING_NUM_BATCH_THREADS:-$(nproc)}"
batching_file="${MODELS_ROOT}/batching_parameters.txt"
cat > "$batching_file" <<CONF
max_batch_size { value: ${TF_SERVING_MAX_BATCH_SIZE:-1024} }
batch_timeout_micros { value: ${TF_SERVING_BATCH_TIMEOUT_MICROS:-0} }
num_batch_threads { value: ${threads} }
max_enqueued_batches { value: ${TF_SERVING_MAX_ENQUEUED_BATCHES:-$threads} }
# Every serving input is rank 1 ([batch]): nothing to pad, and padding string tensors is unsupported.
pad_variable_length_inputs: false
CONF

echo "start.sh: serving ${MODEL_PATH} as ${MODEL_NAME} version ${version} on port ${PORT} (batch threads: ${threads})" >&2
exec tensorflow_model_server \
  --port="$GRPC_PORT" \
  --rest_api_port="$PORT" \
  --model_name="$MODEL_NAME" \
  --model_base_path="${MODELS_ROOT}/${MODEL_NAME}" \
  --enable_batching=true \
  --batching_parameters_file="$batching_file" \
  "$@"
