#!/usr/bin/env bash
# The main job: set up .venv, then run the end-to-end demo on built-in synthetic data.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
exec "$root/.venv/bin/m3dhmr" demo "$@"
