#!/usr/bin/env bash
# Builds the Go operator client in GOPATH mode (Debian 12 has no module proxy access here):
# generates the Go stubs with scripts/gen-stubs.sh, puts main.go into the same GOPATH and
# builds it against Debian's grpc-go in /usr/share/gocode.
#
# Usage: examples/clients/go/build.sh [OUT]     (OUT defaults to stubs-out/ at the repository root)
# Prints the path of the binary, OUT/bin/hefl-operator-client-go, on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
out=${1:-$ROOT/stubs-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Go keeps its build cache under $HOME; without one (some CI shells), keep it beside the build.
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
  export GOCACHE="$out/go/cache"
fi

GO_IMPORT_PREFIX=hefl.example/stubs "$ROOT/scripts/gen-stubs.sh" --lang go "$out"
package_dir="$out/go/src/hefl.example/clients/operator"
mkdir -p "$package_dir" "$out/bin"
cp "$HERE/main.go" "$package_dir/main.go"
GO111MODULE=off GOFLAGS='' GOPATH="$out/go:/usr/share/gocode" \
  go build -o "$out/bin/hefl-operator-client-go" hefl.example/clients/operator
echo "$out/bin/hefl-operator-client-go"
