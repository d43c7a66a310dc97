#!/usr/bin/env bash
# Builds the C++ operator client against Debian's libgrpc++ and libprotobuf: generates the C++
# stubs with scripts/gen-stubs.sh, compiles the three translation units it needs and the
# client (two at a time), and links them.
#
# Usage: examples/clients/cpp/build.sh [OUT]     (OUT defaults to stubs-out/ at the repository root)
# Prints the path of the binary, OUT/bin/hefl-operator-client-cpp, on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
out=${1:-$ROOT/stubs-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)

"$ROOT/scripts/gen-stubs.sh" --lang cpp "$out"
objects="$out/cpp/obj"
mkdir -p "$objects" "$out/bin"
read -r -a flags <<<"$(pkg-config --cflags grpc++ protobuf)"
read -r -a libs <<<"$(pkg-config --libs grpc++ protobuf)"
sources=(
  "$out/cpp/hefl/v1/common.pb.cc"
  "$out/cpp/hefl/v1/operator_service.pb.cc"
  "$out/cpp/hefl/v1/operator_service.grpc.pb.cc"
  "$HERE/client.cc"
)
# shellcheck disable=SC2016 # $0..$2 are expanded by the inner sh
printf '%s\n' "${sources[@]}" | xargs -P 2 -I{} sh -c \
  'g++ -std=c++17 -O1 -I"$1/cpp" $2 -c "$0" -o "$1/cpp/obj/$(basename "$0" .cc).o"' \
  {} "$out" "${flags[*]}"
g++ -o "$out/bin/hefl-operator-client-cpp" \
  "$objects/common.pb.o" "$objects/operator_service.pb.o" \
  "$objects/operator_service.grpc.pb.o" "$objects/client.o" "${libs[@]}"
echo "$out/bin/hefl-operator-client-cpp"
