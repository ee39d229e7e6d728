#!/usr/bin/env bash
# CI step: the MONAI Label app's tests (tests/test_monailabel_app.py) against the real monailabel 0.8.5, including
# its server started on 127.0.0.1 and answering a good, a bad and a hostile infer request.
#
# monailabel's declared requirements would replace the project's torch, numpy and pydicom (see the app's README), so
# it is installed without them into temporary folders, on PYTHONPATH for this one pytest run only:
# - "$target": monailabel and the few small packages its infer-task modules import (the in-process task tests);
# - "$server": what its server imports besides (FastAPI, uvicorn, dicomweb-client, ...), pinned to versions that
#   import beside the project's stack;
# - "$pydicom2": pydicom 2.4, first on the server's path only: monailabel's server imports pydicom-seg, which needs
#   pydicom < 3 (`pydicom._storage_sopclass_uids`); the project itself and the task tests keep pydicom 3.
# Run it with the project's environment active (.ci/run calls it after installing requirements-dev.txt); the main
# test run skips what needs monailabel.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python}"

work="$(mktemp -d)"
trap 'rm -rf "$work"; rm -rf apps/monailabel/bin apps/monailabel/model' EXIT
target="$work/monailabel" server="$work/server" pydicom2="$work/pydicom2"
pip_target() { "$python" -m pip install -q --disable-pip-version-check --no-deps --target "$@"; }

pip_target "$target" \
  monailabel==0.8.5 expiring_dict==1.1.2 sortedcontainers==2.4.0 pynrrd==1.1.3 python-dotenv==1.2.4 \
  pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 annotated-types==0.8.0 typing-inspection==0.4.5
pip_target "$server" \
  fastapi==0.115.12 starlette==0.46.2 uvicorn==0.54.0 python-multipart==0.0.34 h11==0.16.0 anyio==4.16.0 \
  sniffio==1.3.1 click==8.5.1 httpx==0.28.1 httpcore==1.0.9 idna==3.20 certifi==2026.10.19.post1 \
  requests==2.34.2 urllib3==2.8.0 charset-normalizer==3.5.3 requests-toolbelt==1.0.0 schedule==1.2.2 \
  timeloop==1.0.2 dicomweb-client==0.59.1 retrying==1.4.2 google-auth==2.63.0 pyasn1==0.6.5 pyasn1-modules==0.4.2 \
  rsa==4.9.1 cachetools==8.0.2 cryptography==50.0.2 cffi==2.1.1 pycparser==3.12 expiringdict==1.2.2 \
  watchdog==7.1.0 passlib==1.7.4 pyjwt==2.15.1 bcrypt==5.0.0 shapely==2.2.0 pydicom-seg==0.4.1 \
  SimpleITK==2.5.7 girder-client==5.0.21 diskcache==5.6.3 psutil==7.2.2
pip_target "$pydicom2" pydicom==2.4.5

# fail loudly if the installs do not import (pytest would only skip)
PYTHONPATH="$target" "$python" -c "import monailabel.tasks.infer.basic_infer"
server_path="$pydicom2:$target:$server"
PYTHONPATH="$server_path" "$python" -c "import monailabel.app, monailabel.main"

MONAILABEL_SERVER_PATH="$server_path" PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" -m pytest -q -rs tests/test_monailabel_app.py
