"""Scores rendered speech by recognising it with an independent recogniser.

Whisper base (multilingual) through faster-whisper (CTranslate2), a different
runtime from kefu's whisper.cpp, decodes each WAV file; the transcript is compared
with the text that was spoken: character error rate for Mandarin, word error rate
for English, after the normalisation below (traditional characters to simplified,
punctuation and spaces dropped, digits spelled the way the reference spells them).

    score.py MODEL_DIR LANGUAGE LABEL LIST.tsv     (LIST: name<TAB>wav<TAB>text)
"""
import re
import sys

import zhconv
from faster_whisper import WhisperModel

ZH_DIGITS = "零一二三四五六七八九"
EN_NUMBERS = "zero one two three four five six seven eight nine ten".split()


def distance(a, b):
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def zh_units(text):
    text = zhconv.convert(text, "zh-cn")
    text = re.sub(r"\d", lambda m: ZH_DIGITS[int(m.group())], text)
    return [c for c in text if re.match(r"[\u4e00-\u9fff\w]", c)]


def en_units(text):
    text = text.lower().replace("a.m.", "am").replace("p.m.", "pm")
    text = re.sub(r"\b(\d|10)\b", lambda m: EN_NUMBERS[int(m.group())], text)
    text = text.replace("-", " ")
    return re.sub(r"[^\w' ]", " ", text).split()


def main():
    model_dir, language, label, listing = sys.argv[1:5]
    model = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=2)
    units = zh_units if language == "zh" else en_units
    errors = total = 0
    for line in open(listing, encoding="utf-8"):
        name, wav, text = line.rstrip("\n").split("\t")
        segments, _ = model.transcribe(wav, language=language, beam_size=5)
        heard = "".join(s.text for s in segments).strip()
        ref, hyp = units(text), units(heard)
        e = distance(ref, hyp)
        errors += e
        total += len(ref)
        print(f"  {name:16} {e:3}/{len(ref):<3} {heard}")
    unit = "CER" if language == "zh" else "WER"
    print(f"{label}: {unit} {errors / max(total, 1):.3f} ({errors}/{total})")


if __name__ == "__main__":
    main()
