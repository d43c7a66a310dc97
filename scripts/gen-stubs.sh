#!/usr/bin/env bash
# Generates hefl.v1 client stubs for languages other than Python from protos/hefl/v1/*.proto
# into an output folder that is never committed (default stubs-out/, listed in .gitignore).
#
# Usage: scripts/gen-stubs.sh [--lang LIST] [--check] [--protos DIR] [OUT]
#   --lang LIST   comma-separated subset of go,cpp,ts,java (default: all of them). With the
#                 default, a language whose tools are missing is skipped with a note; a language
#                 named in --lang whose tools are missing is an error, and so is generating
#                 nothing at all.
#   --check       also compile what was generated: go build (GOPATH mode), g++ -fsyntax-only,
#                 tsc --strict --noEmit, javac against Debian's jars
#   --protos DIR  the proto root holding hefl/v1/*.proto (default: the repository's protos/)
#   OUT           output folder (default: stubs-out/ at the repository root)
#
# What lands where (PKG is $GO_IMPORT_PREFIX/hefl/v1, default hefl.example/stubs/hefl/v1):
#   go    OUT/go/src/PKG/*.pb.go, *_grpc.pb.go   protoc-gen-go + protoc-gen-go-grpc, Go package
#         heflv1, for GOPATH mode: GOPATH=OUT/go:/usr/share/gocode GO111MODULE=off
#   cpp   OUT/cpp/hefl/v1/*.pb.{h,cc}, *.grpc.pb.{h,cc}   protoc --cpp_out + grpc_cpp_plugin
#   ts    OUT/ts/ts-proto/hefl/v1/*.ts      ts-proto (messages and @grpc/grpc-js clients)
#         OUT/ts/proto-loader-types/        proto-loader-gen-types (types for @grpc/proto-loader)
#         The npm tools and runtime packages go to OUT/ts/node_modules, at pinned versions.
#   java  OUT/java/hefl/v1/*.java           protoc --java_out + grpc_java_plugin; Java package
#         hefl.v1; compile against Debian's /usr/share/java/{protobuf,grpc-*,guava}.jar
#
# Tools: scripts/install-stub-tools.sh installs all of them from Debian (and npm for ts).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO_IMPORT_PREFIX=${GO_IMPORT_PREFIX:-hefl.example/stubs}
# npm packages for ts, pinned (all fetched from the npm registry, no install scripts needed).
GRPC_JS_VERSION=1.14.7
PROTO_LOADER_VERSION=0.8.1
TS_PROTO_VERSION=2.18.0
TYPESCRIPT_VERSION=7.0.2
TYPES_NODE_VERSION=26.6.6
# Debian's jars that the generated Java needs to compile.
JAVA_JARS=(protobuf grpc-api grpc-stub grpc-protobuf grpc-protobuf-lite guava jsr305)
ALL=(go cpp ts java)

note() { echo "gen-stubs: $*" >&2; }
usage() { sed -n '2,/^[^#]/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'; }

langs=()
explicit=0
check=0
protos="$ROOT/protos"
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --lang)
      [ $# -ge 2 ] || { usage >&2; exit 2; }
      IFS=, read -r -a langs <<<"$2"
      explicit=1
      shift 2
      ;;
    --lang=*)
      IFS=, read -r -a langs <<<"${1#--lang=}"
      explicit=1
      shift
      ;;
    --check)
      check=1
      shift
      ;;
    --protos)
      [ $# -ge 2 ] || { usage >&2; exit 2; }
      protos=$2
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*)
      note "unknown option $1"
      usage >&2
      exit 2
      ;;
    *)
      [ -z "$out" ] || { note "only one output folder"; exit 2; }
      out=$1
      shift
      ;;
  esac
done
[ "${#langs[@]}" -gt 0 ] || langs=("${ALL[@]}")
for lang in "${langs[@]}"; do
  case " ${ALL[*]} " in
    *" $lang "*) ;;
    *)
      note "unknown language '$lang' (choose from ${ALL[*]})"
      exit 2
      ;;
  esac
done
out=${out:-$ROOT/stubs-out}
mkdir -p "$out"
out=$(cd "$out" && pwd)
protos=$(cd "$protos" && pwd)

# The proto files, relative to the proto root, as protoc wants them.
mapfile -t FILES < <(cd "$protos" && ls hefl/v1/*.proto)
[ "${#FILES[@]}" -gt 0 ] || { note "no hefl/v1/*.proto under $protos"; exit 1; }

# Debian's protoc finds the well-known types (google/protobuf/*.proto) in /usr/include.
SYSTEM_INCLUDES=()
if [ -f /usr/include/google/protobuf/timestamp.proto ]; then
  SYSTEM_INCLUDES=(-I /usr/include)
fi

# C++ and Java (protobuf 3.21, Debian 12) generate a static descriptor() / getDescriptor() on
# every message, which clashes with the accessor of a field named `descriptor` (hefl.v1 has five:
# SignedRoundDescriptor, TaskAssignment, SignDescriptorTask, CertifyContributorSetTask and
# OpenAggregateTask), and the generated code does not compile. For those two languages the stubs
# are generated from a copy of the protos in which such fields are named `round_descriptor`.
# Only the name changes, never the number or the type, so the wire format is identical; the
# JSON name becomes roundDescriptor. Go (protoc-gen-go renames the getter to GetDescriptor_)
# and TypeScript use the protos as they are.
renamed_protos() {
  local copy="$out/.protos-renamed"
  rm -rf "$copy"
  mkdir -p "$copy/hefl/v1"
  if grep -q -E '^[[:space:]]*[A-Za-z0-9_.]+ round_descriptor = ' "$protos"/hefl/v1/*.proto; then
    note "a field is already named round_descriptor; cannot rename the descriptor fields"
    return 1
  fi
  local file
  for file in "${FILES[@]}"; do
    sed -E 's/^([[:space:]]*(repeated |optional )?[A-Za-z0-9_.]+ )descriptor( = [0-9]+)/\1round_descriptor\3/' \
      "$protos/$file" >"$copy/$file"
  done
  echo "$copy"
}

missing_tools() {
  local tool
  local lacking=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || lacking+=("$tool")
  done
  echo "${lacking[*]-}"
}

gen_go() {
  local dest="$out/go/src"
  local package="$GO_IMPORT_PREFIX/hefl/v1"
  local mappings=() file options
  # The protos carry no go_package option (it would tie them to one repository layout), so
  # every file is mapped to the import path here.
  for file in "${FILES[@]}"; do
    mappings+=("M$file=$package;heflv1")
  done
  options=$(IFS=,; echo "${mappings[*]}")
  rm -rf "${dest:?}/$package"
  mkdir -p "$dest"
  protoc -I "$protos" "${SYSTEM_INCLUDES[@]}" \
    --go_out="$dest" --go_opt="$options" \
    --go-grpc_out="$dest" --go-grpc_opt="$options" \
    "${FILES[@]}"
  note "go: $dest/$package (package heflv1)"
  if [ "$check" -eq 1 ]; then
    if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
      export GOCACHE="$out/go/cache"
    fi
    GO111MODULE=off GOFLAGS='' GOPATH="$out/go:/usr/share/gocode" go build "$package"
    note "go: checked, go build $package succeeds"
  fi
}

gen_cpp() {
  local dest="$out/cpp" copy
  copy=$(renamed_protos)
  rm -rf "${dest:?}/hefl"
  mkdir -p "$dest"
  protoc -I "$copy" "${SYSTEM_INCLUDES[@]}" \
    --cpp_out="$dest" \
    --grpc_out="$dest" --plugin=protoc-gen-grpc="$(command -v grpc_cpp_plugin)" \
    "${FILES[@]}"
  note "cpp: $dest/hefl/v1 (fields named descriptor are round_descriptor here)"
  if [ "$check" -eq 1 ]; then
    local flags
    flags=$(pkg-config --cflags grpc++ protobuf)
    # Two at a time: the machines have two cores.
    # shellcheck disable=SC2016 # $0..$2 are expanded by the inner sh
    printf '%s\n' "$dest"/hefl/v1/*.cc \
      | xargs -P 2 -I{} sh -c 'g++ -std=c++17 -fsyntax-only -I"$1" $2 "$0"' {} "$dest" "$flags"
    note "cpp: checked, g++ -fsyntax-only finds no error"
  fi
}

gen_ts() {
  # The npm tools live in OUT/ts/node_modules, which is also where the generated files find
  # @grpc/grpc-js and @bufbuild/protobuf when they are type-checked or compiled in place.
  local tools="$out/ts"
  mkdir -p "$tools"
  cat >"$tools/package.json" <<JSON
{
  "name": "hefl-stub-tools",
  "private": true,
  "dependencies": {
    "@grpc/grpc-js": "$GRPC_JS_VERSION",
    "@grpc/proto-loader": "$PROTO_LOADER_VERSION",
    "@types/node": "$TYPES_NODE_VERSION",
    "ts-proto": "$TS_PROTO_VERSION",
    "typescript": "$TYPESCRIPT_VERSION"
  }
}
JSON
  local wanted package version
  for wanted in "ts-proto:$TS_PROTO_VERSION" "typescript:$TYPESCRIPT_VERSION" \
    "@grpc/proto-loader:$PROTO_LOADER_VERSION" "@grpc/grpc-js:$GRPC_JS_VERSION" \
    "@types/node:$TYPES_NODE_VERSION"; do
    package=${wanted%:*}
    version=${wanted##*:}
    if ! grep -q "\"version\": \"$version\"" "$tools/node_modules/$package/package.json" 2>/dev/null; then
      (cd "$tools" && npm install --no-audit --no-fund --loglevel=error --no-package-lock >/dev/null)
      break
    fi
  done
  local dest="$out/ts/ts-proto"
  rm -rf "$dest"
  mkdir -p "$dest"
  # forceLong=string: uint64 fields (versions, sequence numbers, sizes) as decimal strings.
  protoc -I "$protos" "${SYSTEM_INCLUDES[@]}" \
    --plugin=protoc-gen-ts_proto="$tools/node_modules/.bin/protoc-gen-ts_proto" \
    --ts_proto_out="$dest" \
    --ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,env=node,forceLong=string \
    "${FILES[@]}"
  note "ts: $dest/hefl/v1 (ts-proto $TS_PROTO_VERSION; imports @grpc/grpc-js, @bufbuild/protobuf)"
  local types="$out/ts/proto-loader-types"
  rm -rf "$types"
  # The proto files must come before --includeDirs, which swallows positional arguments.
  "$tools/node_modules/.bin/proto-loader-gen-types" "${FILES[@]}" \
    --keepCase --longs=String --enums=String --defaults --oneofs \
    --grpcLib=@grpc/grpc-js --outDir="$types" --includeDirs "$protos" >/dev/null
  note "ts: $types (proto-loader-gen-types, for keepCase/longs=String/enums=String/defaults)"
  if [ "$check" -eq 1 ]; then
    (cd "$tools" && node_modules/.bin/tsc --noEmit --target es2020 --module nodenext \
      --esModuleInterop --skipLibCheck --strict --types node \
      ts-proto/hefl/v1/*.ts proto-loader-types/*.ts)
    note "ts: checked, tsc --strict --noEmit finds no error"
  fi
}

gen_java() {
  local dest="$out/java" copy
  copy=$(renamed_protos)
  rm -rf "${dest:?}/hefl"
  mkdir -p "$dest"
  protoc -I "$copy" "${SYSTEM_INCLUDES[@]}" \
    --java_out="$dest" \
    --grpc-java_out="$dest" --plugin=protoc-gen-grpc-java="$(command -v grpc_java_plugin)" \
    "${FILES[@]}"
  # grpc_java_plugin 1.41 always writes @javax.annotation.Generated (its @generated=omit option
  # came later), which Java 11+ lacks and Debian does not package; @GrpcGenerated stays.
  sed -i '/^@javax\.annotation\.Generated(/,/)$/d' "$dest"/hefl/v1/*Grpc.java
  note "java: $dest/hefl/v1 (package hefl.v1; fields named descriptor are round_descriptor here)"
  if [ "$check" -eq 1 ]; then
    local jar classpath=()
    for jar in "${JAVA_JARS[@]}"; do
      [ -f "/usr/share/java/$jar.jar" ] || { note "java: /usr/share/java/$jar.jar missing"; return 1; }
      classpath+=("/usr/share/java/$jar.jar")
    done
    rm -rf "$out/java-classes"
    javac -nowarn -d "$out/java-classes" -cp "$(IFS=:; echo "${classpath[*]}")" \
      "$dest"/hefl/v1/*.java
    note "java: checked, javac compiles it into $out/java-classes"
  fi
}

failed=0
generated=0
for lang in "${langs[@]}"; do
  case "$lang" in
    go) tools=(protoc protoc-gen-go protoc-gen-go-grpc) ;;
    cpp) tools=(protoc grpc_cpp_plugin) ;;
    ts) tools=(protoc node npm) ;;
    java) tools=(protoc grpc_java_plugin) ;;
  esac
  if [ "$check" -eq 1 ]; then
    case "$lang" in
      go) tools+=(go) ;;
      cpp) tools+=(g++ pkg-config) ;;
      java) tools+=(javac) ;;
    esac
  fi
  absent=$(missing_tools "${tools[@]}")
  if [ -n "$absent" ]; then
    if [ "$explicit" -eq 1 ]; then
      note "$lang: missing $absent (run scripts/install-stub-tools.sh)"
      failed=1
    else
      note "$lang: skipped, missing $absent (run scripts/install-stub-tools.sh)"
    fi
    continue
  fi
  case "$lang" in
    go) gen_go ;;
    cpp) gen_cpp ;;
    ts) gen_ts ;;
    java) gen_java ;;
  esac
  generated=$((generated + 1))
done
if [ "$generated" -eq 0 ] && [ "$failed" -eq 0 ]; then
  note "no language's tools are installed; nothing generated"
  failed=1
fi
exit "$failed"
