#!/usr/bin/env python3
"""Converts a Whisper model in CTranslate2 format (model.bin, binary version 6) into
the ggml file format that whisper.cpp (and so whisper-rs) loads.

Why this exists: the only registry packages that ship Whisper weights ship them in
CTranslate2 format, and whisper.cpp's own converters start from PyTorch checkpoints.
The layout written here follows whisper.cpp's `convert-pt-to-ggml.py`: hyperparameters,
the mel filter bank, the tokenizer's byte strings, then every tensor under the names
whisper.cpp expects. CTranslate2 fuses the attention projections (q|k|v for self
attention, k|v for cross attention); they are split back here, dropping the all-zero
key bias that CTranslate2 inserts and Whisper does not have.

Usage: whisper_ct2_to_ggml.py MODEL.bin MEL_FILTERS.npz TOKENIZER.tiktoken OUT.bin
                              [--type f16|q8_0]
"""

import argparse
import base64
import struct
import sys

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}

GGML_MAGIC = 0x67676D6C
GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0 = 0, 1, 8
# whisper.cpp's hparams.ftype: "mostly f16" / "mostly q8_0", with the quantisation
# format version folded in as ggml's quantize tool does (version 2, factor 1000).
FTYPE_MOSTLY_F16, FTYPE_MOSTLY_Q8_0 = 1, 7
QNT_VERSION_FACTOR, QNT_VERSION = 1000, 2


def read_ct2(path):
    """Returns {name: ndarray} with aliases resolved."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        size = struct.calcsize(fmt)
        out = struct.unpack_from("<" + fmt, data, pos)
        pos += size
        return out

    def string():
        nonlocal pos
        (n,) = take("H")
        s = data[pos : pos + n].rstrip(b"\0").decode()
        pos += n
        return s

    (version,) = take("I")
    if version != 6:
        sys.exit(f"{path}: CTranslate2 binary version {version}, expected 6")
    spec = string()
    take("I")  # spec revision
    if spec != "WhisperSpec":
        sys.exit(f"{path}: model spec {spec!r}, expected WhisperSpec")
    (count,) = take("I")
    variables = {}
    for _ in range(count):
        name = string()
        (rank,) = take("B")
        dims = take("I" * rank)
        (dtype,) = take("B")
        (nbytes,) = take("I")
        if dtype not in DTYPES:
            sys.exit(f"{path}: variable {name} has unsupported dtype {dtype}")
        arr = np.frombuffer(data, dtype=DTYPES[dtype], count=nbytes // np.dtype(DTYPES[dtype]).itemsize, offset=pos)
        variables[name] = arr.reshape(dims) if rank else arr
        pos += nbytes
    (aliases,) = take("I")
    for _ in range(aliases):
        alias = string()
        target = string()
        variables[alias] = variables[target]
    if pos != len(data):
        sys.exit(f"{path}: {len(data) - pos} trailing bytes; the file is corrupt")
    return variables


def read_npy_from_npz(path, key):
    return np.load(path)[key]


def whisper_tensors(v, n_audio_layer, n_text_layer, n_state):
    """Yields (whisper.cpp name, array) in PyTorch naming."""

    def ln(prefix, src):
        yield f"{prefix}.weight", v[f"{src}/gamma"]
        yield f"{prefix}.bias", v[f"{src}/beta"]

    def linear(prefix, src):
        yield f"{prefix}.weight", v[f"{src}/weight"]
        yield f"{prefix}.bias", v[f"{src}/bias"]

    def split(src, parts):
        w = v[f"{src}/weight"]
        b = v[f"{src}/bias"]
        return [(w[i * n_state : (i + 1) * n_state], b[i * n_state : (i + 1) * n_state]) for i in range(parts)]

    def attention(prefix, fused_qkv=None, q=None, fused_kv=None, out=None):
        if fused_qkv:
            (qw, qb), (kw, _kb), (vw, vb) = split(fused_qkv, 3)
        else:
            qw, qb = v[f"{q}/weight"], v[f"{q}/bias"]
            (kw, _kb), (vw, vb) = split(fused_kv, 2)
        yield f"{prefix}.query.weight", qw
        yield f"{prefix}.query.bias", qb
        yield f"{prefix}.key.weight", kw
        yield f"{prefix}.value.weight", vw
        yield f"{prefix}.value.bias", vb
        yield from linear(f"{prefix}.out", out)

    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    yield "encoder.conv1.weight", v["encoder/conv1/weight"]
    yield "encoder.conv1.bias", v["encoder/conv1/bias"].reshape(-1, 1)
    yield "encoder.conv2.weight", v["encoder/conv2/weight"]
    yield "encoder.conv2.bias", v["encoder/conv2/bias"].reshape(-1, 1)
    for i in range(n_audio_layer):
        src = f"encoder/layer_{i}"
        dst = f"encoder.blocks.{i}"
        yield from attention(f"{dst}.attn", fused_qkv=f"{src}/self_attention/linear_0", out=f"{src}/self_attention/linear_1")
        yield from ln(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        yield from linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        yield from linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        yield from ln(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
    yield from ln("encoder.ln_post", "encoder/layer_norm")

    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    for i in range(n_text_layer):
        src = f"decoder/layer_{i}"
        dst = f"decoder.blocks.{i}"
        yield from attention(f"{dst}.attn", fused_qkv=f"{src}/self_attention/linear_0", out=f"{src}/self_attention/linear_1")
        yield from ln(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        yield from attention(
            f"{dst}.cross_attn",
            q=f"{src}/attention/linear_0",
            fused_kv=f"{src}/attention/linear_1",
            out=f"{src}/attention/linear_2",
        )
        yield from ln(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
        yield from linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        yield from linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")
        yield from ln(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
    yield from ln("decoder.ln", "decoder/layer_norm")


def quantize_q8_0(a):
    """ggml's Q8_0: blocks of 32 values, an f16 scale then 32 int8."""
    flat = a.astype(np.float32).reshape(-1, 32)
    amax = np.abs(flat).max(axis=1)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0)
    q = np.round(flat * inv[:, None]).astype(np.int8)
    out = np.empty(flat.shape[0], dtype=[("d", "<f2"), ("q", "i1", 32)])
    out["d"] = d.astype(np.float16)
    out["q"] = q
    return out.tobytes()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("mel_filters")
    ap.add_argument("tokenizer")
    ap.add_argument("out")
    ap.add_argument("--type", choices=["f16", "q8_0"], default="f16")
    args = ap.parse_args()

    v = read_ct2(args.model)
    n_vocab, n_state = v["decoder/embeddings/weight"].shape
    n_audio_ctx = v["encoder/position_encodings/encodings"].shape[0]
    n_text_ctx = v["decoder/position_encodings/encodings"].shape[0]
    n_mels = v["encoder/conv1/weight"].shape[1]
    n_audio_layer = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    n_text_layer = sum(1 for k in v if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    n_audio_head = int(v["encoder/num_heads"].reshape(-1)[0])
    n_text_head = int(v["decoder/num_heads"].reshape(-1)[0])
    ftype = FTYPE_MOSTLY_F16 if args.type == "f16" else FTYPE_MOSTLY_Q8_0 + QNT_VERSION * QNT_VERSION_FACTOR

    mel = read_npy_from_npz(args.mel_filters, f"mel_{n_mels}").astype(np.float32)
    with open(args.tokenizer, "rb") as f:
        tokens = [base64.b64decode(line.split()[0]) for line in f.read().splitlines() if line]

    with open(args.out, "wb") as out:
        out.write(struct.pack("<i", GGML_MAGIC))
        out.write(
            struct.pack(
                "<11i",
                n_vocab, n_audio_ctx, n_state, n_audio_head, n_audio_layer,
                n_text_ctx, n_state, n_text_head, n_text_layer, n_mels, ftype,
            )
        )
        out.write(struct.pack("<ii", mel.shape[0], mel.shape[1]))
        out.write(mel.tobytes())
        out.write(struct.pack("<i", len(tokens)))
        for t in tokens:
            out.write(struct.pack("<i", len(t)))
            out.write(t)
        written = 0
        for name, arr in whisper_tensors(v, n_audio_layer, n_text_layer, n_state):
            # Like whisper.cpp's converter: 1-D tensors, conv biases and positional
            # embeddings stay f32; matrices are f16, or q8_0 where rows split into
            # 32-value blocks (the 3-D conv kernels stay f16).
            small = arr.ndim < 2 or name.endswith("conv1.bias") or name.endswith("conv2.bias") or "positional_embedding" in name
            if small:
                ttype, payload = GGML_TYPE_F32, np.ascontiguousarray(arr, dtype=np.float32).tobytes()
            elif args.type == "q8_0" and arr.ndim == 2 and arr.shape[-1] % 32 == 0:
                ttype, payload = GGML_TYPE_Q8_0, quantize_q8_0(arr)
            else:
                ttype, payload = GGML_TYPE_F16, np.ascontiguousarray(arr, dtype=np.float16).tobytes()
            encoded = name.encode()
            out.write(struct.pack("<iii", arr.ndim, len(encoded), ttype))
            for dim in reversed(arr.shape):
                out.write(struct.pack("<i", dim))
            out.write(encoded)
            out.write(payload)
            written += 1
    print(f"{args.out}: {written} tensors, {n_audio_layer}+{n_text_layer} layers, n_state {n_state}, vocab {n_vocab}, {args.type}")


if __name__ == "__main__":
    main()
