#!/usr/bin/env bash
# buf breaking against the protos on the main branch; a first commit has nothing to break.
set -euo pipefail
buf=${1:-buf}
if git rev-parse --verify --quiet main >/dev/null && git cat-file -e main:protos/buf.yaml 2>/dev/null; then
  "$buf" breaking protos --against '.git#branch=main,subdir=protos'
  echo "buf breaking: no breaking change against main"
else
  echo "buf breaking: main has no protos yet, nothing to compare"
fi
