#!/usr/bin/env bash
# Create .venv at the repository root and install m3dhmr with its test extras and the
# web app's (Gradio: m3dhmr app, tested in tests/test_app*.py).
# Idempotent: a second run only checks a stamp (hash of pyproject.toml) and returns.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
venv="$root/.venv"
stamp="$venv/.m3dhmr-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import m3dhmr, torch, torchvision" 2>/dev/null; then
  exit 0
fi
echo "[setup] creating/updating $venv (first run takes a few minutes)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
# torch and torchvision pinned as a pair: these builds lie on the machines' disk and
# must match each other (PyPI's torchvision does not import beside other torch builds).
"$venv/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$venv/bin/python" -m pip install -q -e ".[dev,app]"
echo "$want" > "$stamp"
