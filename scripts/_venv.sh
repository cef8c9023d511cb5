# Sourced by scripts/demo and scripts/test: an isolated environment in .venv with the project installed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.installed${extras:+-$extras}"
if [ -z "$extras" ] && [ ! -f "$stamp" ] && [ -f .venv/.installed-test ]; then
  stamp=.venv/.installed-test  # the test installation includes the plain one
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}" \
    2> >(grep -v "Location .* is ignored" >&2)
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
