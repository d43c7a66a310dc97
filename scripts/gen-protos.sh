#!/usr/bin/env bash
# Generates Python stubs (_pb2.py, _pb2_grpc.py and their mypy-protobuf .pyi) beside
# the .proto files, so `hefl.v1` is both the proto package and the Python package.
set -euo pipefail
root=${1:-protos}
out=${2:-$root}
python -m grpc_tools.protoc -I "$root" \
  --python_out="$out" --grpc_python_out="$out" \
  --mypy_out="$out" --mypy_grpc_out="$out" \
  "$root"/hefl/v1/*.proto
