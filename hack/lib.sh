# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
# Shared by the hack/ scripts: paths, logging, Python discovery and the pinned virtual environments.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# A Python interpreter of the given minor version (3.12 -> python3.12), from PATH or pyenv.
# A pyenv shim may be on PATH for a version pyenv has not selected: only an interpreter that
# actually runs counts.
find_python() {
  local minor=$1 candidate
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$minor".*/bin/python"$minor" "python$minor"; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

# ensure_venv DIR PYTHON_MINOR REQUIREMENTS_FILE: create or refresh a virtual environment holding
# exactly the pinned requirements; nothing happens when the pins have not changed.
ensure_venv() {
  local dir=$1 minor=$2 requirements=$3 python stamp want
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  stamp="$dir/.kubeforge-requirements"
  if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  python="$(find_python "$minor")" || die "Python $minor is needed for $dir (install it, e.g. with pyenv)"
  log "creating $dir (Python $minor, $requirements)"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --upgrade pip
  "$dir/bin/python" -m pip install --quiet --requirement "$requirements"
  echo "$want" >"$stamp"
}

# The newest supported ansible-core (Python 3.12) and the oldest (2.17, Python 3.11).
venv_newest() { ensure_venv "$ROOT/.venv" 3.12 "$ROOT/requirements/test.txt"; }
venv_oldest() { ensure_venv "$ROOT/.venv-oldest" 3.11 "$ROOT/requirements/oldest.txt"; }
