#!/usr/bin/env bash
# Prints the path of a working CPython 3.10 interpreter, or fails with a hint.
# The openfhe wheel ships a CPython 3.10 extension only, so no other version will do.
set -euo pipefail
candidates=("${PYTHON310:-}" python3.10 /usr/bin/python3.10 /usr/local/bin/python3.10)
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*; do
  candidates+=("$dir/bin/python3.10")
done
for py in "${candidates[@]}"; do
  [ -n "$py" ] || continue
  if version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) \
      && [ "$version" = "3.10" ]; then
    command -v "$py" || echo "$py"
    exit 0
  fi
done
echo "error: CPython 3.10 not found (openfhe needs exactly 3.10)." >&2
echo "  Ubuntu 22.04: apt install python3.10 python3.10-venv;  pyenv: pyenv install 3.10" >&2
echo "  or point PYTHON310=/path/to/python3.10" >&2
exit 1
