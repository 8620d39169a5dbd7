# shellcheck shell=bash
# Sourced by scripts/serve, scripts/test and .ci/run: create or reuse the virtual environment at
# <repo>/.venv and install SceneOS into it (editable, with the test extra).
#
# After sourcing, the current directory is the repository root, .venv/bin is first on PATH and
# SCENEOS_ROOT / SCENEOS_VENV name the two directories.
#
# The install runs only when pyproject.toml changed since the last successful one: a stamp file
# inside .venv keeps the SHA-256 of pyproject.toml. Delete .venv (or the stamp) to force it.

SCENEOS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCENEOS_VENV="$SCENEOS_ROOT/.venv"
SCENEOS_STAMP="$SCENEOS_VENV/.sceneos-install-stamp"
SCENEOS_MIN_PYTHON="3.11"
cd "$SCENEOS_ROOT"

_sceneos_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# True when "$1" runs and is Python >= 3.11 (a pyenv shim for an absent version does not run).
_sceneos_python_ok() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

_sceneos_find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && _sceneos_python_ok "$candidate"; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    local found="none found"
    if command -v python3 >/dev/null 2>&1; then
        found="$(python3 -c 'import sys; print("python3 is %d.%d.%d" % sys.version_info[:3])' 2>/dev/null || echo "python3 does not run")"
    fi
    _sceneos_die "SceneOS needs Python >= $SCENEOS_MIN_PYTHON (python3.11 or python3 on PATH; $found)"
}

_sceneos_hash() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

_sceneos_ensure_venv() {
    # A venv whose interpreter is gone or too old (e.g. made by another Python) is rebuilt.
    if [[ -x "$SCENEOS_VENV/bin/python" ]] && _sceneos_python_ok "$SCENEOS_VENV/bin/python"; then
        return 0
    fi
    local python
    python="$(_sceneos_find_python)" || exit 1
    printf 'Creating virtual environment %s with %s (%s)\n' "$SCENEOS_VENV" "$python" \
        "$("$python" -c 'import platform; print(platform.python_version())')" >&2
    "$python" -m venv --clear "$SCENEOS_VENV" \
        || _sceneos_die "could not create $SCENEOS_VENV (on Debian/Ubuntu: apt-get install python3-venv)"
}

_sceneos_ensure_installed() {
    local wanted
    wanted="$(_sceneos_hash "$SCENEOS_ROOT/pyproject.toml")"
    if [[ -f "$SCENEOS_STAMP" && "$(cat "$SCENEOS_STAMP")" == "$wanted" ]] \
        && "$SCENEOS_VENV/bin/python" -c 'import importlib.metadata as m; m.distribution("sceneos")' >/dev/null 2>&1; then
        return 0
    fi
    printf 'Installing SceneOS into %s (pip install -e ".[test]")\n' "$SCENEOS_VENV" >&2
    # -q keeps pip quiet; its errors still print, and a failure stops the calling script.
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$SCENEOS_VENV/bin/python" -m pip install -q -e ".[test]" \
        || _sceneos_die "pip install -e \".[test]\" failed (see pip's output above)"
    printf '%s\n' "$wanted" >"$SCENEOS_STAMP"
}

_sceneos_setup() {
    # Serialize concurrent first runs (scripts/serve and scripts/test started together).
    if command -v flock >/dev/null 2>&1; then
        local lock
        lock="${TMPDIR:-/tmp}/sceneos-venv-$(printf '%s' "$SCENEOS_ROOT" | cksum | cut -d' ' -f1).lock"
        exec 9>"$lock"
        flock 9
        _sceneos_ensure_venv
        _sceneos_ensure_installed
        flock -u 9
        exec 9>&-
    else
        _sceneos_ensure_venv
        _sceneos_ensure_installed
    fi
}

_sceneos_setup

export VIRTUAL_ENV="$SCENEOS_VENV"
export PATH="$SCENEOS_VENV/bin:$PATH"
unset PYTHONHOME
