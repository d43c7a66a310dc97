#!/usr/bin/env bash
# Installs the toolchains that `scripts/gen-stubs.sh` and the clients in examples/clients/
# need: protoc and grpc_cpp_plugin with libgrpc++ (C++), Go 1.19 with Debian's grpc-go and
# protoc-gen-go(-grpc) (Go, GOPATH mode), Node.js and npm (Node), and Java's grpc_java_plugin
# with libgrpc-java and the jars it runs on (Java; --no-java leaves it out).
#
# Idempotent: a package already installed is not asked for again, so a second run costs
# a few dpkg queries. Never fails: without root, apt-get or a reachable mirror it says why
# and exits 0; the tests whose toolchain is missing then skip with a reason.
#
# Usage: scripts/install-stub-tools.sh [--no-java] [--no-npm]
#   --no-java  leave out the Java packages (libgrpc-java and its run-time jars, the plugin, a JDK)
#   --no-npm   do not pre-fetch the Node client's packages (examples/clients/node)
set -uo pipefail

note() { echo "install-stub-tools: $*" >&2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
java=1
npm_fetch=1
for argument in "$@"; do
  case "$argument" in
    --no-java) java=0 ;;
    --no-npm) npm_fetch=0 ;;
    -h | --help)
      sed -n '2,/^[^#]/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      note "unknown argument $argument"
      exit 2
      ;;
  esac
done

# golang-github-golang-protobuf-1-5-dev must be named: otherwise apt satisfies grpc-go's
# dependency with the 1-3 package, and the first RPC of a Go client panics in its codec.
# Never add golang-goprotobuf-dev: it is the old 1.3 stack and removes 1-5 again.
PACKAGES=(
  protobuf-compiler
  protobuf-compiler-grpc
  libprotobuf-dev
  libgrpc++-dev
  pkg-config
  g++
  golang-go
  golang-google-grpc-dev
  golang-github-golang-protobuf-1-5-dev
  golang-google-protobuf-dev
  protoc-gen-go
  protoc-gen-go-grpc
)
if [ "$java" -eq 1 ]; then
  # libgrpc-java depends on none of its run-time jars: Netty, perfmark and gson come separately.
  PACKAGES+=(
    libgrpc-java protobuf-compiler-grpc-java-plugin libprotobuf-java
    libnetty-java libperfmark-java libgoogle-gson-java
  )
  command -v javac >/dev/null 2>&1 || PACKAGES+=(default-jdk-headless)
fi
# Any Node.js >= 18.3 does (util.parseArgs); Debian's is only installed when there is none at all.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

fetch_node_packages() {
  local dir="$ROOT/examples/clients/node"
  [ "$npm_fetch" -eq 1 ] || return 0
  [ -d "$dir/node_modules/@grpc/grpc-js" ] && [ -d "$dir/node_modules/@grpc/proto-loader" ] \
    && return 0
  if ! command -v npm >/dev/null 2>&1; then
    note "no npm; the Node client's packages were not fetched"
    return 0
  fi
  if (cd "$dir" && timeout 300 npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1); then
    note "fetched the Node client's packages into examples/clients/node/node_modules"
  else
    note "npm ci in examples/clients/node failed (offline?); the Node test will skip"
  fi
}

missing=()
for package in "${PACKAGES[@]}"; do
  installed "$package" || missing+=("$package")
done

if [ "${#missing[@]}" -eq 0 ]; then
  fetch_node_packages
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  note "not root; skipping ${missing[*]} (tests that need them will skip)"
  fetch_node_packages
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  note "no apt-get; skipping ${missing[*]} (tests that need them will skip)"
  fetch_node_packages
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
install() {
  timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1
}

# The package lists may already be fresh; only refresh them when the first attempt fails.
if install; then
  note "installed ${missing[*]}"
elif ! timeout 300 apt-get update -qq >/dev/null 2>&1; then
  note "apt-get update failed (offline?); skipping ${missing[*]}"
elif install; then
  note "installed ${missing[*]}"
else
  # One unavailable package must not cost the others: try them one by one.
  for package in "${missing[@]}"; do
    if timeout 600 apt-get install -y -qq --no-install-recommends "$package" >/dev/null 2>&1; then
      note "installed $package"
    else
      note "apt-get install $package failed; tests that need it will skip"
    fi
  done
fi
if installed golang-github-golang-protobuf-1-3-dev; then
  note "golang-github-golang-protobuf-1-3-dev is installed: Go clients will panic on the first RPC"
fi
fetch_node_packages
exit 0
