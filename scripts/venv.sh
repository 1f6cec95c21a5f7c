#!/usr/bin/env bash
# The project's virtualenv, built from the lock file. Nothing is ever installed into the system Python.
#
#   scripts/venv.sh ensure   create .venv when missing, rebuild it when the lock changed; print its python
#   scripts/venv.sh lock     re-resolve requirements.lock from setup.cfg's ranges (UPGRADE=1: newest
#                            versions everywhere), then rebuild .venv from it
#
# .venv is built with the interpreter's own `venv` module and pip, installing exactly the pinned,
# hash-checked versions of requirements.lock (`pip install --require-hashes --no-deps`), then the
# project itself in editable mode with the lock's setuptools (no build isolation, so nothing outside
# the lock is fetched). The lock is written by uv (`uv pip compile`, itself pinned in the lock's
# `tools` extra), which resolves every extra of setup.cfg for every platform in one file.
#
# A stamp in .venv records the lock, setup.cfg and interpreter it was built from; when any of them
# changes the venv is rebuilt from scratch, so a package that left the lock leaves the venv too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
VENV="$ROOT/.venv"
LOCK="$ROOT/requirements.lock"
BASE_PYTHON="${BASE_PYTHON:-python3}"
EXTRAS=(test bench stack tools)

say() { printf '%s\n' "$*" >&2; }
die() { printf 'venv: %s\n' "$*" >&2; exit 1; }

stamp_of() {
    { "$BASE_PYTHON" -c 'import sys; print(sys.version)'; cat "$LOCK" "$ROOT/setup.cfg" "$ROOT/pyproject.toml"; } \
        | sha256sum | cut -c1-64
}

build() {
    [[ -f "$LOCK" ]] || die "requirements.lock is missing (make lock writes it)"
    command -v "$BASE_PYTHON" >/dev/null 2>&1 || die "$BASE_PYTHON not found"
    if ! "$BASE_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        die "$BASE_PYTHON lacks the venv module (Debian: apt-get install python3-venv)"
    fi
    local start=$SECONDS
    say "venv: building .venv from requirements.lock"
    rm -rf "$VENV"
    "$BASE_PYTHON" -m venv "$VENV"
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
    PIP_REQUIRE_VIRTUALENV=1 "${pip[@]}" install --require-hashes --no-deps -r "$LOCK"
    PIP_REQUIRE_VIRTUALENV=1 "${pip[@]}" install --no-deps --no-build-isolation -e "$ROOT"
    # Every pinned package must import its dependencies from the venv alone.
    "${pip[@]}" check >&2 || die "the installed packages do not fit together (pip check)"
    stamp_of >"$VENV/.lock-stamp"
    say "venv: ready in $((SECONDS - start)) s ($("$VENV/bin/python" -m pip list --format=freeze 2>/dev/null | wc -l) packages)"
}

ensure() {
    if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c '' 2>/dev/null \
        || [[ ! -f "$VENV/.lock-stamp" ]] || [[ "$(cat "$VENV/.lock-stamp")" != "$(stamp_of)" ]]; then
        build
    fi
    echo "$VENV/bin/python"
}

lock() {
    # uv comes from the venv; a venv that no longer fits setup.cfg (a dependency was just added) still has it.
    [[ -x "$VENV/bin/uv" ]] || ensure >/dev/null
    local extras=() e
    for e in "${EXTRAS[@]}"; do extras+=(--extra "$e"); done
    local upgrade=()
    [[ "${UPGRADE:-0}" == 1 ]] && upgrade=(--upgrade)
    (cd "$ROOT" && "$VENV/bin/uv" pip compile setup.cfg "${extras[@]}" "${upgrade[@]}" --generate-hashes \
        --universal --python-version 3.11 --quiet --output-file requirements.lock \
        --custom-compile-command "make lock")
    say "venv: requirements.lock written ($(grep -c '==' "$LOCK") packages)"
    ensure >/dev/null
}

case "${1:-}" in
    ensure) ensure ;;
    lock) lock ;;
    *) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
