#!/usr/bin/env bash
# Build the Dockerfile once with podman and run the image: kept outside the test suite (it
# takes minutes and root). No registry is needed: the base is a Debian bookworm made by
# debootstrap with Python 3.11 (as python:3.11-slim has it), imported as a local image.
#
#   sudo scripts/podman-image.sh   # prints each check; exit 1 at the first that fails
# (--format docker: OCI images drop HEALTHCHECK)
#
# Needs podman, runc and debootstrap (apt-get install podman runc debootstrap); pip in the
# build reaches PyPI (and PyTorch's CPU index with WITH_LOCAL_MODEL=true).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=localhost/captioner-base:bookworm-python3.11
IMAGE=localhost/supabase-captioner:podman-check
ROOTFS=${ROOTFS:-/tmp/captioner-rootfs}
PORT=${PORT:-18701}
LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)
PODMAN=(podman --runtime runc)
NAME=captioner-podman-check

step() { printf '\n== %s\n' "$*"; }
check() {  # check <what> <command...>: ✓/✗ and stop at the first ✗
  local what=$1; shift
  if "$@"; then echo "✓ $what"; else echo "✗ $what"; exit 1; fi
}

if ! "${PODMAN[@]}" image exists "$BASE"; then
  step "base image from debootstrap"
  [ -x "$ROOTFS/usr/bin/python3" ] || debootstrap --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$ROOTFS" http://deb.debian.org/debian
  tar -C "$ROOTFS" -c . | "${PODMAN[@]}" import --change 'CMD ["python"]' - "$BASE"
fi

step "build (WITH_UI=${WITH_UI:-true}, WITH_LOCAL_MODEL=${WITH_LOCAL_MODEL:-false})"
started=$(date +%s)
# A host behind a proxy with its own CA: lend the build the host's CA bundle and pip.conf.
LEND=()
for file in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf; do
  [ -f "$file" ] && LEND+=(--volume "$file:$file:ro")
done
LOG=/tmp/captioner-podman-build.log
if ! "${PODMAN[@]}" build --format docker "${LIMITS[@]}" "${LEND[@]}" --network host \
    --build-arg PYTHON_IMAGE="$BASE" --build-arg WITH_UI="${WITH_UI:-true}" \
    --build-arg WITH_LOCAL_MODEL="${WITH_LOCAL_MODEL:-false}" -t "$IMAGE" . > "$LOG" 2>&1; then
  tail -20 "$LOG"; echo "✗ build failed: $LOG"; exit 1
fi
grep -E '^(STEP|COMMIT)|WARN' "$LOG" || true
echo "built in $(( $(date +%s) - started )) s; $("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Size}}') bytes"

inside() { "${PODMAN[@]}" run --rm "${LIMITS[@]}" --network none "$IMAGE" "$@"; }
step "what the image holds"
check "runs as uid 10001" test "$(inside id -u)" = 10001
check "no compilers" inside sh -c '! command -v gcc && ! command -v cc && ! command -v make'
check "no pip, setuptools or wheel" inside python -c '
import importlib.util, sys
sys.exit(any(importlib.util.find_spec(m) for m in ("pip", "setuptools", "wheel")))'
check "captioner --help runs" inside captioner --help
check "migrations found from / " inside sh -c 'cd / && python -c "
from app.commands.migrate import MIGRATIONS_DIR as d
from app.commands.doctor import expected_schema_version as v
assert len(list(d.glob(\"*.sql\"))) >= 10 and v() > 0, (d, v())
print(d, v())"'
check "UI_ENABLED follows WITH_UI" test "$(inside printenv UI_ENABLED)" = "${WITH_UI:-true}"

step "run: no settings, HOST=0.0.0.0 (the image's), PORT=$PORT"
"${PODMAN[@]}" rm -f "$NAME" >/dev/null 2>&1 || true
"${PODMAN[@]}" run -d --name "$NAME" "${LIMITS[@]}" --network host -e PORT="$PORT" "$IMAGE" >/dev/null
trap '"${PODMAN[@]}" rm -f "$NAME" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 120); do
  curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 1
done
"${PODMAN[@]}" logs "$NAME" 2>&1 | grep '^captioner: ' || true
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check "listens on PORT=$PORT: /healthz 200" test "$(code "http://127.0.0.1:$PORT/healthz")" = 200
check "HEALTHCHECK follows PORT" "${PODMAN[@]}" healthcheck run "$NAME"
check "the API is locked without API_KEYS (403)" test "$(code -X POST "http://127.0.0.1:$PORT/v1/captions")" = 403
if [ "${WITH_UI:-true}" = true ]; then
  check "the page is locked without credentials (403)" test "$(code "http://127.0.0.1:$PORT/ui/")" = 403
else
  check "no page, and no Gradio (404)" test "$(code "http://127.0.0.1:$PORT/ui/")" = 404
fi
check "the start-up says why" sh -c "${PODMAN[*]} logs $NAME 2>&1 | grep -q 'is locked: the API needs a key'"
echo "all checks passed"
