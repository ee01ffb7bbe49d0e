#!/usr/bin/env bash
# End of turn: pipecat's Smart Turn v3.2 model (from the pipecat-ai wheel, used as it
# ships) against kefu's own rule (the dialogue would answer the words at the pause),
# at pauses that end a request and pauses inside one. See benches/turn/smart_turn.py
# for the method; figures go to benches/RESULTS.md.
#
#   benches/turn.sh      (needs a release build, the models, python3 and the
#                         Asterisk prompts: Debian's asterisk-core-sounds-en-wav)
set -euo pipefail
cd "$(dirname "$0")/.."
kefu=${KEFU:-target/release/kefu}
[ -x "$kefu" ] || { echo "turn: build kefu first (cargo build --release)" >&2; exit 1; }
bench=target/turn-bench
export PIP_ROOT_USER_ACTION=ignore
if [ ! -x "$bench/venv/bin/python" ] || ! "$bench/venv/bin/python" -c "import onnxruntime, soxr, numpy" 2>/dev/null; then
  python3 -m venv "$bench/venv"
  "$bench/venv/bin/pip" install --quiet --disable-pip-version-check "onnxruntime==1.20.1" "soxr==1.1.0" "numpy==2.4.6"
fi
wheel=$bench/pipecat_ai-1.14.0-py3-none-any.whl
if [ ! -f "$wheel" ]; then
  "$bench/venv/bin/pip" download --quiet --no-deps --disable-pip-version-check "pipecat-ai==1.14.0" -d "$bench"
fi
smart=$bench/smart_turn
if [ ! -s "$smart/model.onnx" ]; then
  mkdir -p "$smart"
  python3 - "$wheel" "$smart" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1:3]
with zipfile.ZipFile(wheel) as z:
    open(f"{out}/model.onnx", "wb").write(z.read("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"))
    open(f"{out}/whisper_features.py", "wb").write(z.read("pipecat/audio/turn/smart_turn/_whisper_features.py"))
PY
fi
"$bench/venv/bin/python" benches/turn/smart_turn.py "$smart/model.onnx" "$smart/whisper_features.py" "$kefu" "$bench/out"
