#!/usr/bin/env bash
# Print constraints.txt from a virtualenv the test suite passed in:
#   scripts/freeze-constraints.sh .venv/bin/python > constraints.txt
# torch keeps its version without the local label (2.13.0, not 2.13.0+cpu), so the CPU and
# the default wheel both satisfy it; this project itself (installed editable) is left out.
set -euo pipefail
python=${1:-.venv/bin/python}
echo "# The versions the test suite passed with; make and the Dockerfile install with"
echo "# --constraint constraints.txt. Regenerate after changing dependencies: make constraints"
"$python" -m pip freeze --exclude-editable --disable-pip-version-check \
  | grep -v -i '^supabase-captioner' \
  | sed -E 's/^(torch|torchvision|torchaudio)==([^+]+)\+.*/\1==\2/' \
  | LC_ALL=C sort -f
