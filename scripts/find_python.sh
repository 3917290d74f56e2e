# Sourced by the install/test scripts: `find_python 3.12 DFP_PYTHON312` prints an interpreter of
# that version: the variable's value if set, else pythonX.Y on PATH (if it runs: pyenv's shims
# fail until a version is selected), else pyenv's X.Y.* build; returns 1 if there is none.
find_python() {
  local version="$1" var="$2" root py
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  if command -v "python$version" >/dev/null && "python$version" -c 'pass' 2>/dev/null; then command -v "python$version"; return; fi
  root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  for py in "$root"/versions/"$version".*/bin/"python$version"; do
    [ -x "$py" ] && { echo "$py"; return; }
  done
  return 1
}
