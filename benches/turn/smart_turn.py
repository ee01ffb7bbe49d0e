"""End of turn: pipecat's Smart Turn v3.2 model against kefu's own rule.

kefu ends a caller's turn early (250 ms after the last voiced sound instead of the
endpointer's 600 ms) when the words recognised at the pause are a whole request:
the dialogue would answer them. Smart Turn v3.2 (pipecat-ai's ONNX model, Whisper
log-mel input, 8 s window) judges the same from the audio alone. Both are asked at
pauses that end a request and at pauses inside one:

- human speech: Asterisk's English prompts (a person's recordings, 8 kHz), whole
  and cut at a gap between words 35-75 % of the way through; only Smart Turn can
  judge these (they are not customers' questions);
- customers' questions: the English questions of tests/fixtures/kb/heldout.tsv
  that have an intent (written apart from the knowledge base), spoken by Piper,
  whole and cut the same way; the words at the pause are what kefu's Whisper
  hears (`kefu transcribe`), judged by the dialogue (`kefu chat`: an Answer).

    smart_turn.py MODEL.onnx FEATURES.py KEFU OUT_DIR
"""
import importlib.util
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soxr

model_path, features_path, kefu, out = sys.argv[1:5]
out = Path(out)
out.mkdir(parents=True, exist_ok=True)
spec = importlib.util.spec_from_file_location("whisper_features", features_path)
features = importlib.util.module_from_spec(spec)
spec.loader.exec_module(features)
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
session = ort.InferenceSession(model_path, sess_options=so)
spent = []


def read(path):
    with wave.open(str(path)) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768


def write(path, x):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())


def frames(x):
    n = len(x) // 160
    return np.sqrt((x[: n * 160].reshape(n, 160) ** 2).mean(axis=1) + 1e-12)


def speech_span(x):
    e = frames(x)
    voiced = np.nonzero(e > max(e.max() * 0.05, 1e-3))[0]
    return voiced[0], voiced[-1] + 1


def cut_point(x):
    """The quietest 20 ms frame 35-75 % of the way through the speech (a word gap)."""
    a, b = speech_span(x)
    e = frames(x)
    lo, hi = a + int((b - a) * 0.35), a + int((b - a) * 0.75)
    if hi - lo < 3:
        return None
    return (lo + int(np.argmin(e[lo:hi]))) * 160


def at_pause(x):
    """The audio as a detector sees it at a pause: 200 ms of quiet line after it."""
    rng = np.random.default_rng(len(x))
    return np.concatenate([x, rng.normal(0, 0.0005, 1600).astype(np.float32)])


def smart_turn(x):
    y = soxr.resample(x, 8000, 16000, quality="HQ").astype(np.float32)
    n = 8 * 16000
    y = y[-n:] if len(y) > n else np.pad(y, (n - len(y), 0))
    mel = features.compute_whisper_log_mel_features(y, do_normalize=True)
    started = time.perf_counter()
    p = session.run(None, {"input_features": mel[None, ...]})[0][0].item()
    spent.append(time.perf_counter() - started)
    return p


def table(name, rows):
    """rows: (complete?, judged complete?)."""
    whole = [j for c, j in rows if c]
    cut = [j for c, j in rows if not c]
    ok = sum(j for j in whole) + sum(not j for j in cut)
    print(
        f"{name}: {len(whole)} whole, {len(cut)} cut; accuracy {ok / len(rows):.3f}; "
        f"whole taken early {sum(whole)}/{len(whole)}; cut taken as whole (caller cut off) {sum(cut)}/{len(cut)}"
    )


# Human speech.
human = []
prompts = sorted(Path("/usr/share/asterisk/sounds/en").glob("*.wav"))
for p in prompts:
    x = read(p)
    if not 1.5 <= len(x) / 8000 <= 6:
        continue
    c = cut_point(x)
    if c is None:
        continue
    a, b = speech_span(x)
    human.append((True, smart_turn(at_pause(x[: b * 160]))))
    human.append((False, smart_turn(at_pause(x[:c]))))
table("Smart Turn v3.2, human prompts (Asterisk, 8 kHz), p > 0.5", [(c, p > 0.5) for c, p in human])

# Customers' questions, spoken by Piper.
questions = []
for line in open("tests/fixtures/kb/heldout.tsv", encoding="utf-8"):
    if line.startswith("#") or "\t" not in line:
        continue
    q, intent = line.rstrip("\n").split("\t")[:2]
    if intent != "-" and q.isascii() and len(q.split()) >= 4:
        questions.append(q)
questions = questions[::2]  # half of them: each judgement starts a `kefu chat`
wavs, labels = [], []
for i, q in enumerate(questions):
    whole = out / f"q{i}.wav"
    subprocess.run([kefu, "say", q, "-o", str(whole), "--models", "models"], check=True, capture_output=True)
    x = read(whole)
    c = cut_point(x)
    if c is None:
        continue
    a, b = speech_span(x)
    for complete, y in ((True, x[: b * 160]), (False, x[:c])):
        f = out / f"q{i}-{'whole' if complete else 'cut'}.wav"
        write(f, at_pause(y))
        wavs.append(f)
        labels.append(complete)
heard = subprocess.run(
    [kefu, "transcribe", "--model", "base-q8_0", "--language", "en", *map(str, wavs)],
    check=True, capture_output=True, text=True,
).stdout
words = dict(line.split("\t", 1) for line in heard.splitlines() if "\t" in line)
st, dialogue = [], []
for f, complete in zip(wavs, labels):
    text = words.get(str(f), "").strip()
    st.append((complete, smart_turn(read(f)) > 0.5))
    reply = subprocess.run(
        [kefu, "chat", "--lang", "en"], input=(text or ".") + "\n",
        capture_output=True, text=True,
    ).stdout
    judged = "[Answer" in reply
    dialogue.append((complete, judged))
    print(f"  {'whole' if complete else 'cut  '} {'answer' if judged else '-     '} {text}")
table("Smart Turn v3.2, customers' questions (Piper), p > 0.5", st)
table("kefu's rule (the dialogue would answer the words), same questions", dialogue)
both = [(c, a and b) for (c, a), (_, b) in zip(st, dialogue)]
table("both agree it is whole", both)
spent.sort()
print(f"Smart Turn inference (one thread, features excluded): p50 {spent[len(spent)//2]*1000:.0f} ms, max {spent[-1]*1000:.0f} ms over {len(spent)}")
