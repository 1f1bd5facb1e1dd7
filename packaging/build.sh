#!/usr/bin/env bash
# Build the vinv app from a checkout: a one-folder bundle at dist/vinv/ whose executable is dist/vinv/vinv.
#
#   bash packaging/build.sh [--distpath DIR] [--workpath DIR]
#
# By default the build gets its own virtual environment, build/venv, with vinv's runtime
# dependencies only (no training extras) and PyInstaller, so torch and friends are not even present.
# VINV_BUILD_ENV=current builds with the Python environment already active instead ($PYTHON, default
# python3; it needs vinv's runtime dependencies and PyInstaller), as the tests do. The spec excludes
# the training libraries by name either way, and this script fails if any of them got in anyway.
# --distpath (default dist) and --workpath (default build/pyinstaller) are passed on to PyInstaller.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
distpath="$root/dist"
workpath="$root/build/pyinstaller"
absolute() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
while [[ $# -gt 1 ]]; do
    case "$1" in
        --distpath) distpath="$(absolute "$2")"; shift 2 ;;
        --workpath) workpath="$(absolute "$2")"; shift 2 ;;
        *) echo "usage: packaging/build.sh [--distpath DIR] [--workpath DIR]" >&2; exit 2 ;;
    esac
done
if [[ $# -gt 0 ]]; then
    echo "usage: packaging/build.sh [--distpath DIR] [--workpath DIR]" >&2
    exit 2
fi
cd "$root"

started=$SECONDS
build_env="${VINV_BUILD_ENV:-venv}"
if [[ "$build_env" != venv && "$build_env" != current ]]; then
    echo "build.sh: VINV_BUILD_ENV must be 'venv' (the default) or 'current', not '$build_env'" >&2
    exit 2
fi
if [[ "$build_env" == current ]]; then
    python="${PYTHON:-python3}"
    if ! "$python" -c "import PyInstaller" 2>/dev/null; then
        echo "build.sh: PyInstaller is not installed in $("$python" -c 'import sys; print(sys.prefix)'):" \
             "pip install pyinstaller" >&2
        exit 1
    fi
else
    python3 -m venv build/venv
    python=build/venv/bin/python
    "$python" -m pip install --quiet --upgrade pip
    "$python" -m pip install --quiet . pyinstaller
fi

"$python" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$distpath" --workpath "$workpath" packaging/vinv.spec

app="$distpath/vinv"
found="$(find "$app" \( -iname 'torch*' -o -iname 'libtorch*' -o -iname 'transformers' -o -iname 'nnAudio' \) \
    -print -quit)"
if [[ -n "$found" ]]; then
    echo "build.sh: training libraries got into the bundle ($found); check the spec's excludes" >&2
    exit 1
fi
"$app/vinv" --version
echo "bundle: $(du -sh "$app" | cut -f1) in $app (built in $((SECONDS - started)) s)"
