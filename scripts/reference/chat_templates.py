#!/usr/bin/env python3
"""Chat templates rendered by Jinja2 the way transformers renders them
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks), for driftui's
minijinja renderer to match: tests/fixtures/templates/*.json.

Input: a template file (the chat_template string of a model's
tokenizer_config.json). Usage:

    ~/llamaref/bin/python scripts/reference/chat_templates.py NAME TEMPLATE_FILE BOS EOS
"""
import json
import os
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

CONVERSATIONS = [
    [{"role": "user", "content": "Should we close the borders?"}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "Is nuclear power safe?"},
     {"role": "assistant", "content": "Mostly, yes."}],
    [{"role": "user", "content": "  Hi!  "},
     {"role": "assistant", "content": "Hello. How can I help?"},
     {"role": "user", "content": "One fact about the moon, please.\n"},
     {"role": "assistant", "content": "It has no atmosphere to speak of."}],
]


def main():
    name, path, bos, eos = sys.argv[1:5]
    template = open(path).read()
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: "26 Jul 2024"
    t = env.from_string(template)
    cases = []
    for msgs in CONVERSATIONS:
        for gen in (False, True):
            if gen and msgs[-1]["role"] == "assistant":
                continue
            cases.append({"messages": msgs, "add_generation_prompt": gen,
                          "text": t.render(messages=msgs, add_generation_prompt=gen,
                                           bos_token=bos, eos_token=eos)})
        if msgs[-1]["role"] == "assistant":
            cases.append({"messages": msgs[:-1], "add_generation_prompt": True,
                          "text": t.render(messages=msgs[:-1], add_generation_prompt=True,
                                           bos_token=bos, eos_token=eos)})
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = os.path.join(root, "tests/fixtures/templates", f"{name}.json")
    with open(out, "w") as f:
        json.dump({"made_by": f"scripts/reference/chat_templates.py, jinja2 {jinja2.__version__}",
                   "template": template, "bos_token": bos, "eos_token": eos, "cases": cases},
                  f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
