#!/usr/bin/env bash
# Creates (or reuses) the project venv on CPython 3.10 and installs hefl with its dev tools.
# Re-running is cheap: pip skips what is already installed, and the venv is kept.
set -euo pipefail
venv=${1:-.venv}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then
  echo "reusing $venv"
else
  rm -rf "$venv"
  py=$("$here/scripts/find-python310.sh")
  echo "creating $venv with $py"
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --use-pep517 -e "$here[dev]"
"$venv/bin/python" -c 'import openfhe, torch, grpc; print("venv ready: torch", torch.__version__, "grpc", grpc.__version__)'
