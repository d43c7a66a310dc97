#!/usr/bin/env bash
# System packages some tests need (a real Prometheus, other-language toolchains).
# Installed from Debian only when missing; a test whose tool is absent skips with a reason.
# Never fails: without root, apt-get or a reachable mirror it says why and exits 0, so that
# `make test` still runs everything else.
set -uo pipefail

note() { echo "install-test-deps: $*" >&2; }

# Toolchains of the other-language client tests (Node, Go, C++, Java); idempotent and quiet.
"$(dirname "${BASH_SOURCE[0]}")/install-stub-tools.sh" || true

# "command package" pairs: the package is wanted when any of its commands is missing.
# Debian's prometheus ships both the server and promtool.
WANTED=(
  "prometheus prometheus"
  "promtool prometheus"
)

missing=()
for pair in "${WANTED[@]}"; do
  read -r command package <<<"$pair"
  if ! command -v "$command" >/dev/null 2>&1; then
    case " ${missing[*]-} " in
      *" $package "*) ;;
      *) missing+=("$package") ;;
    esac
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  note "not root; skipping ${missing[*]} (tests that need them will skip)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  note "no apt-get; skipping ${missing[*]} (tests that need them will skip)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# --no-install-recommends keeps prometheus-node-exporter out. Containers refuse to start the
# packaged daemon (policy-rc.d); tests start their own instance on a loopback port anyway.
install() {
  timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1
}

# The package lists may already be fresh; only refresh them when the first attempt fails.
if install; then
  note "installed ${missing[*]}"
  exit 0
fi
if ! timeout 300 apt-get update -qq >/dev/null 2>&1; then
  note "apt-get update failed (offline?); skipping ${missing[*]}"
  exit 0
fi
if install; then
  note "installed ${missing[*]}"
else
  note "apt-get install ${missing[*]} failed; tests that need them will skip"
fi
exit 0
