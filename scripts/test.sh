#!/usr/bin/env bash
# The test suite: set up .venv, then run pytest on both cores.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "$root/.venv/bin/python" -m pytest -n 2 -q "$@"
