#!/usr/bin/env python3
"""Check a driftui export and LoRA snapshot with transformers and PEFT.

    python3 check_export.py BASE_DIR LORA_SNAPSHOT EXPORT_DIR DRIFTUI_LOGITS.json ID ID ...

Loads EXPORT_DIR with transformers (the merged model), BASE_DIR + the PEFT
adapter in LORA_SNAPSHOT with PEFT, and compares their last-position logits
with each other and with driftui's (the JSON list `cargo run --example
logits -- LORA_SNAPSHOT IDS...` prints). Not a dependency of driftui.
"""
import json
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def last_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float()


def main():
    base_dir, lora_dir, export_dir, ours_path = sys.argv[1:5]
    ids = [int(x) for x in sys.argv[5:]]
    ours = torch.tensor(json.load(open(ours_path)))
    merged = AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    base_logits = last_logits(base, ids)
    peft = PeftModel.from_pretrained(base, lora_dir)
    a, b = last_logits(merged, ids), last_logits(peft, ids)
    tok = AutoTokenizer.from_pretrained(export_dir)
    print(f"tokenizer: {type(tok).__name__}, {len(tok)} tokens; 'Hello world' -> {tok('Hello world').input_ids}")
    print(f"transformers(export) vs PEFT(base + adapter): max |diff| {(a - b).abs().max():.2e}")
    print(f"transformers(export) vs driftui(snapshot):    max |diff| {(a - ours).abs().max():.2e}")
    print(f"PEFT(base + adapter) vs driftui(snapshot):    max |diff| {(b - ours).abs().max():.2e}")
    print(f"training moved the logits by                  max |diff| {(base_logits - b).abs().max():.2e}")
    ok = (a - b).abs().max() < 1e-4 and (a - ours).abs().max() < 1e-4
    print("OK" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
