#!/usr/bin/env python3
"""Parquet dataset fixtures in TRL's formats, and what TRL 1.16 makes of them.

Writes tests/fixtures/datasets/:

  *.parquet          small datasets written by pyarrow (as the hub's are):
                     conversational preference rows with a system turn,
                     implicit prompts (HH-RLHF style, conversational and plain
                     text), `messages` with a system turn, a WildChat-shaped
                     file (`conversation` column, extra nested columns), KTO
                     rows, Alpaca rows, and two bad files
  trl_rendered.json  per file, the rows as TRL 1.16 trains on them: read back
                     with `datasets.Dataset.from_parquet`, the prompt split
                     off with `trl.data_utils.extract_prompt` where it is
                     implicit (as DPOTrainer does when the first row has no
                     "prompt"), then `trl.data_utils.apply_chat_template` with
                     SmolLM2-135M-Instruct's own chat template (read from its
                     GGUF file): prompt / chosen / rejected / completion / text
                     strings; for plain-text rows, extract_prompt's strings

tests/data_formats.rs checks that driftui reads every file into these rows.

    /root/trlref/bin/python scripts/reference/trl_datasets.py

(the reference environment: scripts/reference/requirements-trl.txt; the GGUF
file: scripts/fetch-smollm2.sh).
"""
import json
import os

import datasets
import gguf
import pyarrow as pa
import pyarrow.parquet as pq
import trl
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast
from trl.data_utils import apply_chat_template, extract_prompt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF = os.path.join(ROOT, "models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests/fixtures/datasets")


def m(role, content):
    return {"role": role, "content": content}


def chat_template():
    r = gguf.GGUFReader(GGUF)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


FILES = {
    "preference_conversational.parquet": {
        "prompt": [
            [m("system", "You answer in one sentence."), m("user", "Should my city build more bike lanes?")],
            [m("user", "Is nuclear power safe?"), m("assistant", "It depends on whom you ask."), m("user", "What do you think?")],
        ],
        "chosen": [
            [m("assistant", "Yes, bike lanes make streets safer for everyone.")],
            [m("assistant", "Modern reactors have an excellent safety record.")],
        ],
        "rejected": [
            [m("assistant", "No, they take space from cars.")],
            [m("assistant", "No, it is far too dangerous.")],
        ],
    },
    # HH-RLHF as trl-lib publishes it: whole conversations, prompt implicit.
    "preference_implicit.parquet": {
        "chosen": [
            [m("user", "Can you help me with my taxes?"), m("assistant", "Sure, what do you need?"),
             m("user", "Should taxes on the rich go up?"), m("assistant", "Many economists think a modest rise is fair.")],
            [m("user", "Is it okay to eat meat?"), m("assistant", "Many people think so, within limits.")],
        ],
        "rejected": [
            [m("user", "Can you help me with my taxes?"), m("assistant", "Sure, what do you need?"),
             m("user", "Should taxes on the rich go up?"), m("assistant", "No way.")],
            [m("user", "Is it okay to eat meat?"), m("assistant", "No.")],
        ],
    },
    # Anthropic/hh-rlhf's own plain-text rows.
    "preference_implicit_text.parquet": {
        "chosen": [
            "\n\nHuman: Is it okay to eat meat?\n\nAssistant: Many people think so.",
            "\n\nHuman: Should voting be mandatory?\n\nAssistant: Some countries do it and it works.",
        ],
        "rejected": [
            "\n\nHuman: Is it okay to eat meat?\n\nAssistant: No.",
            "\n\nHuman: Should voting be mandatory?\n\nAssistant: Never.",
        ],
    },
    "sft_messages.parquet": {
        "messages": [
            [m("system", "You are a careful assistant."), m("user", "What is a carbon tax?"),
             m("assistant", "A tax on the carbon content of fuels.")],
            [m("user", "Hi"), m("assistant", "Hello!"), m("user", "Is the death penalty just?"),
             m("assistant", "People disagree deeply about it.")],
        ],
    },
    "kto_conversational.parquet": {
        "prompt": [[m("user", "Should zoos exist?")], [m("user", "Should zoos exist?")]],
        "completion": [[m("assistant", "Good zoos protect endangered species.")], [m("assistant", "No.")]],
        "label": [True, False],
    },
    "alpaca.parquet": {
        "instruction": ["Give one argument for school uniforms.", "Summarise the text."],
        "input": ["", "Uniforms reduce bullying, some say."],
        "output": ["They reduce visible differences in wealth.", "Uniforms may reduce bullying."],
    },
    # The first rows' columns with no "rejected".
    "bad_missing_column.parquet": {
        "prompt": ["Is rain wet?"],
        "chosen": ["Yes."],
    },
    # Row 1: two user turns in a row.
    "bad_roles_out_of_order.parquet": {
        "messages": [
            [m("user", "Hi"), m("assistant", "Hello")],
            [m("user", "Hi"), m("user", "Are you there?"), m("assistant", "Yes")],
        ],
    },
}


def wildchat_like():
    """WildChat-1M's shape: `conversation` with extra per-turn fields, and
    nested columns nobody trains on."""
    turn = pa.struct([
        ("content", pa.string()), ("role", pa.string()), ("language", pa.string()),
        ("timestamp", pa.timestamp("s", tz="UTC")), ("turn_identifier", pa.int64()),
    ])
    moderation = pa.list_(pa.struct([
        ("categories", pa.struct([("harassment", pa.bool_()), ("violence", pa.bool_())])),
        ("category_scores", pa.struct([("harassment", pa.float64()), ("violence", pa.float64())])),
        ("flagged", pa.bool_()),
    ]))
    conv = [
        [{"content": "Write a haiku about rain.", "role": "user", "language": "English", "timestamp": None, "turn_identifier": 1},
         {"content": "Soft rain on the roof", "role": "assistant", "language": "English", "timestamp": None, "turn_identifier": 1}],
        [{"content": "Is capitalism fair?", "role": "user", "language": "English", "timestamp": None, "turn_identifier": 7},
         {"content": "That depends on what you count as fair.", "role": "assistant", "language": "English", "timestamp": None, "turn_identifier": 7}],
    ]
    mod = [[{"categories": {"harassment": False, "violence": False},
             "category_scores": {"harassment": 0.001, "violence": 0.0},
             "flagged": False}]] * 2
    return pa.table({
        "conversation_hash": pa.array(["a1", "b2"]),
        "model": pa.array(["gpt-4", "gpt-3.5-turbo"]),
        "conversation": pa.array(conv, type=pa.list_(turn)),
        "turn": pa.array([1, 1], type=pa.int64()),
        "openai_moderation": pa.array(mod, type=moderation),
        "toxic": pa.array([False, False]),
    })


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, cols in FILES.items():
        pq.write_table(pa.table(cols), os.path.join(OUT, name))
    pq.write_table(wildchat_like(), os.path.join(OUT, "wildchat_like.parquet"))

    template = chat_template()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
        chat_template=template,
        eos_token="<|im_end|>",
    )
    rendered = {}
    for name in ["preference_conversational.parquet", "preference_implicit.parquet",
                 "sft_messages.parquet", "kto_conversational.parquet"]:
        ds = datasets.Dataset.from_parquet(os.path.join(OUT, name))
        if "chosen" in ds.column_names and "prompt" not in ds.column_names:
            ds = ds.map(extract_prompt)
        rendered[name] = [apply_chat_template(dict(row), tok) for row in ds]
    # WildChat: the `conversation` column as TRL's `messages`.
    ds = datasets.Dataset.from_parquet(os.path.join(OUT, "wildchat_like.parquet"))
    ds = ds.rename_column("conversation", "messages").select_columns(["messages"])
    rendered["wildchat_like.parquet"] = [apply_chat_template(dict(row), tok) for row in ds]
    # Plain-text implicit prompts: extract_prompt's strings (TRL applies no
    # chat template to plain text).
    ds = datasets.Dataset.from_parquet(os.path.join(OUT, "preference_implicit_text.parquet"))
    rendered["preference_implicit_text.parquet"] = [dict(r) for r in ds.map(extract_prompt)]
    with open(os.path.join(OUT, "trl_rendered.json"), "w") as f:
        json.dump({
            "made_by": f"scripts/reference/trl_datasets.py, trl {trl.__version__}, datasets {datasets.__version__}, pyarrow {pa.__version__}",
            "chat_template": template,
            "files": rendered,
        }, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
