#!/usr/bin/env bash
# CI step: the MONAI Label app's tests (tests/test_monailabel_app.py) against the real monailabel 0.8.5.
#
# monailabel's declared requirements would replace the project's torch, numpy and pydicom (see the app's README), so
# it is installed without them into a temporary folder, together with the few small packages that its infer-task
# modules import, and put on PYTHONPATH for this one pytest run. Run it with the project's environment active
# (.ci/run calls it after installing requirements-dev.txt); the main test run skips that test file instead.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"

target="$(mktemp -d)"
trap 'rm -rf "$target"' EXIT
"$python" -m pip install -q --disable-pip-version-check --no-deps --target "$target" \
  monailabel==0.8.5 expiring_dict==1.1.2 sortedcontainers==2.4.0 pynrrd==1.1.3 python-dotenv==1.2.4 \
  pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 annotated-types==0.8.0 typing-inspection==0.4.5

# fail loudly if the install does not import (pytest would only skip the file)
PYTHONPATH="$target" "$python" -c "import monailabel.tasks.infer.basic_infer"
PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}" "$python" -m pytest -q -rs tests/test_monailabel_app.py
