#!/usr/bin/env bash
# Regenerates the stubs into a scratch folder and compares them with the committed ones.
set -euo pipefail
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/out"
"$(dirname "$0")/gen-protos.sh" protos "$scratch/out"
status=0
for generated in "$scratch"/out/hefl/v1/*; do
  committed=protos/hefl/v1/$(basename "$generated")
  if ! cmp -s "$generated" "$committed"; then
    echo "drift: $committed differs from a fresh generation (run 'make protos')" >&2
    status=1
  fi
done
for committed in protos/hefl/v1/*_pb2*.py*; do
  [ -e "$scratch/out/hefl/v1/$(basename "$committed")" ] || {
    echo "stale: $committed has no .proto any more" >&2; status=1; }
done
[ $status -eq 0 ] && echo "protos: committed stubs match the .proto files"
exit $status
