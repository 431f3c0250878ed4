#!/usr/bin/env python3
"""A tiny transformers reward model and its scores: the fixture driftui's
reward-model loader and scorer are checked against; or, given a directory
driftui exported, transformers' scores of it.

    /root/trlref/bin/python scripts/reference/reward_model.py make tests/fixtures/reward
    /root/trlref/bin/python scripts/reference/reward_model.py score DIR ROWS.json

`make` builds a LlamaForSequenceClassification (num_labels = 1, tied
embeddings, pad id 0) from torch.manual_seed(0), every weight redrawn
normal(0, 0.1) (norms 1 + that) so scores are far from 0, and an unusual
rope θ (500, which transformers 5 writes inside `rope_parameters`), saves it with
save_pretrained (config.json, model.safetensors) and writes scores.json:
{"versions", "rows" (token ids, right-padded with the pad id, as one
batch with its attention mask), "scores" (transformers', float32)}.
Rows include one that ends in pad ids inside the sequence's real tokens'
reach, where transformers pools at the rightmost non-pad token.

`score` loads DIR with AutoModelForSequenceClassification and prints the
JSON list of its scores of ROWS.json's rows (a JSON list of id lists),
each row alone, so padding plays no part. Not a dependency of driftui.
"""
import json
import platform
import sys

import torch
import transformers
from transformers import AutoModelForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

PAD = 0
ROWS = [
    [5, 17, 33, 2],
    [9, 4, 60, 61, 62, 63, 2],
    [7, 7, 7],
    [11, 12, 0, 13, 0],  # pad ids at the end: pooled at 13
]


def make(out):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, rms_norm_eps=1e-5,
        rope_theta=500.0, max_position_embeddings=64, tie_word_embeddings=True,
        attention_bias=False, pad_token_id=PAD, bos_token_id=1, eos_token_id=2, num_labels=1,
    )
    model = LlamaForSequenceClassification(cfg).to(torch.float32).eval()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape) * 0.1
            p.copy_(1.0 + noise if name.endswith("norm.weight") else noise)
    model.save_pretrained(out, safe_serialization=True)
    width = max(len(r) for r in ROWS)
    ids = torch.tensor([r + [PAD] * (width - len(r)) for r in ROWS])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ROWS])
    with torch.no_grad():
        scores = model(input_ids=ids, attention_mask=mask).logits[:, 0]
    out_json = {
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "rows": ids.tolist(),
        "scores": scores.tolist(),
    }
    with open(f"{out}/scores.json", "w") as f:
        json.dump(out_json, f, indent=1)
        f.write("\n")


def score(d, rows_path):
    model = AutoModelForSequenceClassification.from_pretrained(d, dtype=torch.float32).eval()
    rows = json.load(open(rows_path))
    with torch.no_grad():
        out = [model(input_ids=torch.tensor([r])).logits[0, 0].item() for r in rows]
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        score(sys.argv[2], sys.argv[3])
