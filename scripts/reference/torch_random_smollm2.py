#!/usr/bin/env python3
"""Run ../shared/bench/torch_baseline.py on a SmolLM2-135M-shaped model with
random weights instead of the GGUF file (same shapes, same work, other
losses), for a machine that has PyTorch but not the file. driftui's twin:
`bench_smollm2 --random`.

    python3 torch_random_smollm2.py PATH/TO/torch_baseline.py --mode train-full --batch 1 --seq 128 --steps 4
"""
import importlib.util
import sys


def main():
    path = sys.argv.pop(1)
    spec = importlib.util.spec_from_file_location("torch_baseline", path)
    tb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tb)

    def load_random(args):
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                          num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                          rms_norm_eps=1e-5, rope_theta=100000.0, max_position_embeddings=8192,
                          tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2,
                          attn_implementation=args.attn)
        model = LlamaForCausalLM(cfg).float()
        print(f"random SmolLM2-135M shape, peak RSS so far {tb.peak_rss_mib():.0f} MiB", file=sys.stderr)
        return model

    tb.load_model = load_random
    if "--gguf" not in sys.argv:
        sys.argv += ["--gguf", "random"]
    tb.main()


if __name__ == "__main__":
    main()
