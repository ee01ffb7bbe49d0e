#!/usr/bin/env bash
# Understanding of recognised Mandarin speech. Every Mandarin question of a held-out
# file (question<TAB>intent, as `kefu kb eval` reads) is spoken by espeak-ng through
# `kefu say --voice espeak-cmn` (8 kHz, as a caller's line carries it), recognised by
# Whisper base-q8_0 (the server's model) with `kefu transcribe`, and the transcripts
# are scored with `kefu kb eval`: once as kefu reads them, once without sound-alike
# correction. Then the same questions as typed, for comparison.
#
#   benches/spoken_kb.sh HELDOUT.tsv [KB_DIR]     (KB_DIR defaults to dialplans/kb)
#
# Needs a release build (cargo build --release) and the models (deploy/models.sh).
# Transcripts are kept in target/spoken/ and reused while the held-out file is the same.
set -euo pipefail
cd "$(dirname "$0")/.."
heldout=${1:?usage: benches/spoken_kb.sh HELDOUT.tsv [KB_DIR]}
kb=${2:-dialplans/kb}
kefu=${KEFU:-target/release/kefu}
[ -x "$kefu" ] || { echo "spoken_kb: build kefu first (cargo build --release)" >&2; exit 1; }

sum=$(sha256sum "$heldout" | cut -c1-16)
dir=target/spoken/$sum
mkdir -p "$dir"
typed=$dir/typed.tsv
spoken=$dir/spoken.tsv

# The Mandarin questions (holding a Han character), numbered.
grep -v '^#' "$heldout" | grep -P '^[^\t]*\p{Han}[^\t]*\t' > "$typed" || true
count=$(wc -l < "$typed")
[ "$count" -gt 0 ] || { echo "spoken_kb: no Mandarin questions in $heldout" >&2; exit 1; }

if [ ! -s "$spoken" ]; then
  echo "spoken_kb: speaking and recognising $count Mandarin questions" >&2
  n=0
  while IFS=$'\t' read -r question _; do
    n=$((n + 1))
    "$kefu" say --voice espeak-cmn -o "$dir/$n.wav" "$question" >/dev/null
  done < "$typed"
  wavs=()
  for i in $(seq 1 "$count"); do wavs+=("$dir/$i.wav"); done
  "$kefu" transcribe --model base-q8_0 --language zh --threads 2 "${wavs[@]}" > "$dir/heard.txt"
  # heard.txt: wav<TAB>text, in order; pair each text with the question's intent.
  paste <(cut -f2- "$dir/heard.txt") <(cut -f2 "$typed") > "$spoken.part"
  mv "$spoken.part" "$spoken"
  rm -f "$dir"/*.wav
fi

echo "== $heldout: $count Mandarin questions, recognised speech, as kefu reads it"
"$kefu" kb eval "$spoken" --kb "$kb"
echo "== recognised speech, without sound-alike correction"
"$kefu" kb eval "$spoken" --kb "$kb" --no-sound-alikes
echo "== the same questions typed"
"$kefu" kb eval "$typed" --kb "$kb"
