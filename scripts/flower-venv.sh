#!/usr/bin/env bash
# Creates (or reuses) .venv-flower: Flower for the external reference benchmark (bench/suites/flower.py).
# A separate venv because flwr pins protobuf/grpcio versions that conflict with hefl's; it needs no
# torch (bench/flower_task trains the digits MLP in numpy), so it stays small.
# Usage: scripts/flower-venv.sh [VENV]   (FLWR_SPEC overrides the pinned release)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$here/.venv-flower}
spec=${FLWR_SPEC:-flwr==1.30.0}
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then
  echo "reusing $venv"
else
  rm -rf "$venv"
  py=$("$here/scripts/find-python310.sh")
  echo "creating $venv with $py"
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet "$spec"
"$venv/bin/python" -c 'import flwr; print("flower venv ready: flwr", flwr.__version__)'
