#!/usr/bin/env bash
# Builds the Java operator client with javac against Debian's jars (libgrpc-java,
# libprotobuf-java, libnetty-java, ...; no Maven, no network): generates the Java stubs with
# scripts/gen-stubs.sh, compiles them with OperatorClient.java, and writes a launcher script.
#
# Usage: examples/clients/java/build.sh [OUT]   (OUT defaults to stubs-out/ at the repository root)
# Prints the path of the launcher, OUT/bin/hefl-operator-client-java, on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
out=${1:-$ROOT/stubs-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Compile time needs the first line; run time also the second and third (the Netty transport).
JARS=(
  protobuf protobuf-util grpc-api grpc-stub grpc-protobuf grpc-protobuf-lite guava jsr305 gson
  grpc-context grpc-core grpc-netty perfmark-api error_prone_annotations
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common
  netty-handler netty-handler-proxy netty-resolver netty-transport
)
jars=()
for jar in "${JARS[@]}"; do
  if [ ! -f "/usr/share/java/$jar.jar" ]; then
    echo "java/build.sh: /usr/share/java/$jar.jar missing (run scripts/install-stub-tools.sh)" >&2
    exit 1
  fi
  jars+=("/usr/share/java/$jar.jar")
done
classpath=$(IFS=:; echo "${jars[*]}")

"$ROOT/scripts/gen-stubs.sh" --lang java "$out"
classes="$out/java-client-classes"
rm -rf "$classes"
mkdir -p "$classes" "$out/bin"
javac -nowarn -d "$classes" -cp "$classpath" "$out"/java/hefl/v1/*.java "$HERE/OperatorClient.java"
launcher="$out/bin/hefl-operator-client-java"
cat >"$launcher" <<LAUNCHER
#!/bin/sh
exec java -cp "$classes:$classpath" hefl.clients.OperatorClient "\$@"
LAUNCHER
chmod +x "$launcher"
echo "$launcher"
