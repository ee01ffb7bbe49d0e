#!/usr/bin/env bash
# Understanding of recognised Mandarin speech. Every Mandarin question of a held-out
# file (question<TAB>intent, as `kefu kb eval` reads) is spoken by `kefu say` (Kokoro's
# Mandarin voice, kokoro-zh, unless VOICE names another, e.g. VOICE=espeak-cmn) at
# 8 kHz as a caller's line carries it, recognised by
# Whisper base-q8_0 (the server's model) with `kefu transcribe`, and the transcripts
# are scored with `kefu kb eval`: as kefu hears and reads them (the recogniser told
# the knowledge base's words, `--kb`, as on a call; sound-alikes corrected), without
# sound-alike correction, and without the words told. Then the same questions as
# typed, for comparison.
#
#   [VOICE=kokoro-zh] benches/spoken_kb.sh HELDOUT.tsv [KB_DIR]   (KB_DIR: dialplans/kb)
#
# Needs a release build (cargo build --release) and the models (deploy/models.sh).
# Recordings and transcripts are kept in target/spoken/ and reused while the held-out
# file is the same.
set -euo pipefail
cd "$(dirname "$0")/.."
heldout=${1:?usage: benches/spoken_kb.sh HELDOUT.tsv [KB_DIR]}
kb=${2:-dialplans/kb}
kefu=${KEFU:-target/release/kefu}
voice=${VOICE:-kokoro-zh}
[ -x "$kefu" ] || { echo "spoken_kb: build kefu first (cargo build --release)" >&2; exit 1; }

sum=$( (cat "$heldout"; echo "$voice") | sha256sum | cut -c1-16)
dir=target/spoken/$sum
mkdir -p "$dir"
typed=$dir/typed.tsv
spoken=$dir/spoken.tsv
plain=$dir/spoken-plain.tsv

# The Mandarin questions (holding a Han character), numbered.
grep -v '^#' "$heldout" | grep -P '^[^\t]*\p{Han}[^\t]*\t' > "$typed" || true
count=$(wc -l < "$typed")
[ "$count" -gt 0 ] || { echo "spoken_kb: no Mandarin questions in $heldout" >&2; exit 1; }

wavs=()
for i in $(seq 1 "$count"); do wavs+=("$dir/$i.wav"); done
if [ ! -s "$dir/$count.wav" ]; then
  echo "spoken_kb: speaking $count Mandarin questions" >&2
  n=0
  while IFS=$'\t' read -r question _; do
    n=$((n + 1))
    "$kefu" say --voice "$voice" -o "$dir/$n.wav" "$question" >/dev/null
  done < "$typed"
fi
# heard*.txt: wav<TAB>text, in order; each text paired with the question's intent.
hear() {
  local out=$1
  shift
  [ -s "$out" ] && return
  echo "spoken_kb: recognising $count Mandarin questions $*" >&2
  "$kefu" transcribe --model base-q8_0 --language zh --threads 2 "$@" "${wavs[@]}" > "$dir/heard.part"
  paste <(cut -f2- "$dir/heard.part") <(cut -f2 "$typed") > "$out.part"
  mv "$out.part" "$out"
}
hear "$spoken" --kb "$kb"
hear "$plain"

echo "== $heldout: $count Mandarin questions spoken by $voice, recognised speech, as kefu hears and reads it"
"$kefu" kb eval "$spoken" --kb "$kb"
echo "== recognised speech, without sound-alike correction"
"$kefu" kb eval "$spoken" --kb "$kb" --no-sound-alikes
echo "== recognised speech, the recogniser not told the knowledge base's words"
"$kefu" kb eval "$plain" --kb "$kb"
echo "== the same questions typed"
"$kefu" kb eval "$typed" --kb "$kb"
