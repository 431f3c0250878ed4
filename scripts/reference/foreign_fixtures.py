#!/usr/bin/env python3
"""Logs and checkpoints written by other trainers, for driftui's readers.

Makes tests/fixtures/foreign/ with the real programs, on a tiny random Llama
(hidden 16, one layer, driftui's built-in tokenizer from assets/builtin/) on
the CPU, a few steps each:

- trl-sft/: TRL's SFTTrainer, save_steps 2, with integrations/driftui_callback.py
  writing events.jsonl beside the checkpoints;
- trl-dpo-lora/: TRL's DPOTrainer with a PEFT LoRA adapter (r 4) on the SFT
  result, save_steps 2, with the callback;
- llamafactory-sft/, llamafactory-dpo/: LLaMA-Factory's own `run_exp`
  (stage sft, stage dpo) writing trainer_log.jsonl and its checkpoint-N/;
- torchtune/: torchtune's DiskLogger (`torchtune.training.metric_logging`)
  fed the payloads its recipes build (full_finetune_single_device: loss, lr,
  tokens_per_second_per_gpu, grad_norm; lora_dpo_single_device: loss, lr,
  tokens_per_second_per_gpu, rewards/*, log_probs/*, logits/*), with the
  numbers of the TRL runs above — torchtune 0.6.1 imports here but its
  recipes do not run on torch 2.15, so the writer is real and the run is not;
- verl/: verl's FileLogger (`verl/utils/tracking.py`, loaded from the verl
  0.9.1 wheel: the package needs ray and vLLM) fed the keys of verl's SFT
  trainer (train/loss, train/lr, train/grad_norm) with the TRL SFT numbers.

Each directory keeps what the trainer wrote except the large or binary files
driftui does not read (optimizer, scheduler, RNG states, tokenizer copies,
training_args.bin): model weights are kept for trl-sft only (tiny; the
tests add the tokenizer back from assets/builtin/). `expected.json` lists,
per fixture, the (step, metrics) the program logged, read back with Python's
json from the program's own files, for the Rust tests to compare against.

Environments (versions pinned; see requirements-trl.txt for the TRL one):

    /root/trlref/bin/python scripts/reference/foreign_fixtures.py trl
    /root/lfref/bin/python  scripts/reference/foreign_fixtures.py llamafactory torchtune verl

/root/lfref is a venv that sees /root/trlref's site-packages after its own,
with llamafactory==0.9.5 transformers==5.6.0 trl==0.24.0 peft==0.18.1
accelerate==1.11.0 datasets==4.0.0 tokenizers==0.22.2 huggingface_hub 1.x
torchtune==0.6.1 torchao==0.10.0 orjson installed (--no-deps, then the
modules they import) and verl==0.9.1's wheel unpacked at $VERL_SRC
(default /tmp/pkgs/verl).
"""
import glob
import importlib.util
import json
import os
import shutil
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "foreign")
ASSETS = os.path.join(ROOT, "assets")
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Files a checkpoint holds that driftui never reads: not committed.
DROP = (
    "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "chat_template.jinja", "generation_config.json", "README.md",
)


def rows(name, n):
    with open(os.path.join(ASSETS, "demo", name)) as f:
        return [json.loads(l) for l in f if l.strip()][:n]


def alpaca_rows(n):
    """The demo SFT rows as instruction/output pairs (the file mixes formats)."""
    out = []
    for r in rows("sft.jsonl", n):
        if "messages" in r:
            user = next(m["content"] for m in r["messages"] if m["role"] == "user")
            answer = next(m["content"] for m in r["messages"] if m["role"] == "assistant")
        elif "prompt" in r:
            user, answer = r["prompt"], r["completion"]
        else:
            user = (r["instruction"] + "\n" + r.get("input", "")).strip()
            answer = r["output"]
        out.append({"instruction": user, "input": "", "output": answer})
    return out


def tiny_model(dst):
    """A random one-layer Llama with the built-in tokenizer, as a HF directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(ASSETS, "builtin", "tokenizer.json"),
        eos_token="<|im_end|>", pad_token="<|endoftext|>",
    )
    tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
        tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    LlamaForCausalLM(cfg).save_pretrained(dst)
    tok.save_pretrained(dst)
    return dst


def keep_small(run_dir, keep_weights):
    for path in glob.glob(os.path.join(run_dir, "**", "*"), recursive=True):
        name = os.path.basename(path)
        if os.path.isfile(path) and (
            name in DROP or (not keep_weights and name.endswith(".safetensors"))
        ):
            os.remove(path)


def trainer_states(run_dir):
    """log_history entries with a training loss, from the newest checkpoint."""
    states = glob.glob(os.path.join(run_dir, "checkpoint-*", "trainer_state.json"))
    newest = max(states, key=lambda p: int(p.split("checkpoint-")[-1].split(os.sep)[0]))
    with open(newest) as f:
        hist = json.load(f)["log_history"]
    return [
        {"step": h["step"], "metrics": {k: v for k, v in h.items() if k != "step"}}
        for h in hist if "loss" in h
    ]


def run_trl(expected):
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    sys.path.insert(0, os.path.join(ROOT, "integrations"))
    from driftui_callback import DriftuiCallback

    work = tempfile.mkdtemp()
    base = tiny_model(os.path.join(work, "base"))
    common = dict(
        max_steps=6, save_steps=2, logging_steps=1, per_device_train_batch_size=4,
        bf16=False, gradient_checkpointing=False, report_to=[], seed=0,
        use_cpu=True, lr_scheduler_type="linear",
    )
    sft_rows = [
        {"messages": [{"role": "user", "content": r["instruction"]},
                      {"role": "assistant", "content": r["output"]}]}
        for r in alpaca_rows(24)
    ]
    sft_dir = os.path.join(OUT, "trl-sft")
    shutil.rmtree(sft_dir, ignore_errors=True)
    t = SFTTrainer(
        model=base, train_dataset=Dataset.from_list(sft_rows),
        args=SFTConfig(output_dir=sft_dir, learning_rate=1e-3, max_length=128, **common),
    )
    t.add_callback(DriftuiCallback())
    t.train()
    sft_model = os.path.join(work, "sft-final")
    t.save_model(sft_model)
    t.processing_class.save_pretrained(sft_model)

    pref = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
            for r in rows("preference.jsonl", 24)]
    dpo_dir = os.path.join(OUT, "trl-dpo-lora")
    shutil.rmtree(dpo_dir, ignore_errors=True)
    t = DPOTrainer(
        model=sft_model, train_dataset=Dataset.from_list(pref),
        args=DPOConfig(output_dir=dpo_dir, learning_rate=5e-3, max_length=128, beta=0.1, **common),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                               task_type="CAUSAL_LM"),
    )
    t.add_callback(DriftuiCallback())
    t.train()
    for d, keep in ((sft_dir, True), (dpo_dir, True)):
        keep_small(d, keep)
    expected["trl-sft"] = trainer_states(sft_dir)
    expected["trl-dpo-lora"] = trainer_states(dpo_dir)
    expected["trl-versions"] = {"trl": trl.__version__}
    # The base the adapters name is a temporary directory gone now: the
    # tests give it with --base, as a user whose base moved would.
    shutil.rmtree(work)


def run_llamafactory(expected):
    import llamafactory
    from llamafactory.train.tuner import run_exp

    work = tempfile.mkdtemp()
    base = tiny_model(os.path.join(work, "base"))
    data = os.path.join(work, "data")
    os.makedirs(data)
    with open(os.path.join(data, "sft.json"), "w") as f:
        json.dump(alpaca_rows(24), f)
    with open(os.path.join(data, "pref.json"), "w") as f:
        json.dump([{"instruction": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
                   for r in rows("preference.jsonl", 24)], f)
    with open(os.path.join(data, "dataset_info.json"), "w") as f:
        json.dump({
            "demo_sft": {"file_name": "sft.json"},
            "demo_pref": {"file_name": "pref.json", "ranking": True,
                          "columns": {"prompt": "instruction", "chosen": "chosen",
                                      "rejected": "rejected"}},
        }, f)
    common = dict(
        model_name_or_path=base, template="empty", dataset_dir=data, cutoff_len=128,
        finetuning_type="full", per_device_train_batch_size=4, max_steps=6,
        save_steps=2, logging_steps=1, report_to="none", overwrite_output_dir=True,
        do_train=True, seed=0, use_cpu=True, bf16=False, fp16=False,
        learning_rate=1e-3, plot_loss=False, trust_remote_code=False,
    )
    for stage, dataset in (("sft", "demo_sft"), ("dpo", "demo_pref")):
        out = os.path.join(OUT, f"llamafactory-{stage}")
        shutil.rmtree(out, ignore_errors=True)
        run_exp(dict(common, stage=stage, dataset=dataset, output_dir=out))
        keep_small(out, keep_weights=False)
        with open(os.path.join(out, "trainer_log.jsonl")) as f:
            expected[f"llamafactory-{stage}"] = [json.loads(l) for l in f if l.strip()]
    expected["llamafactory-version"] = llamafactory.__version__
    shutil.rmtree(work)


def payloads(name):
    with open(os.path.join(OUT, "expected.json")) as f:
        return json.load(f)[name]


def run_torchtune(expected):
    import torchtune
    from torchtune.training.metric_logging import DiskLogger

    out = os.path.join(OUT, "torchtune")
    shutil.rmtree(out, ignore_errors=True)
    logged = []
    # full_finetune_single_device.py builds this dict at each log step.
    log = DiskLogger(log_dir=os.path.join(out, "sft", "logs"), filename="log_1760000000.txt")
    for e in payloads("trl-sft"):
        m = e["metrics"]
        p = {"loss": m["loss"], "lr": m["learning_rate"],
             "tokens_per_second_per_gpu": 1234.5 + e["step"], "grad_norm": m["grad_norm"]}
        log.log_dict(p, step=e["step"])
        logged.append({"step": e["step"], "metrics": p})
    log.close()
    expected["torchtune-sft"] = logged
    # lora_dpo_single_device.py's log dict.
    logged = []
    log = DiskLogger(log_dir=os.path.join(out, "dpo", "logs"), filename="log_1760000100.txt")
    for e in payloads("trl-dpo-lora"):
        m = e["metrics"]
        p = {"loss": m["loss"], "lr": m["learning_rate"],
             "tokens_per_second_per_gpu": 999.0,
             "rewards/chosen": m["rewards/chosen"], "rewards/rejected": m["rewards/rejected"],
             "rewards/accuracies": m["rewards/accuracies"], "rewards/margins": m["rewards/margins"],
             "log_probs/rejected": m["logps/rejected"], "log_probs/chosen": m["logps/chosen"],
             "logits/rejected": m["logits/rejected"], "logits/chosen": m["logits/chosen"]}
        log.log_dict(p, step=e["step"])
        logged.append({"step": e["step"], "metrics": p})
    log.close()
    expected["torchtune-dpo"] = logged
    expected["torchtune-version"] = torchtune.__version__


def run_verl(expected):
    src = os.environ.get("VERL_SRC", "/tmp/pkgs/verl")
    spec = importlib.util.spec_from_file_location(
        "verl_tracking", os.path.join(src, "verl", "utils", "tracking.py"))
    tracking = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tracking)
    out = os.path.join(OUT, "verl")
    shutil.rmtree(out, ignore_errors=True)
    os.environ["VERL_FILE_LOGGER_ROOT"] = out
    os.environ.pop("VERL_FILE_LOGGER_PATH", None)
    log = tracking.FileLogger(project_name="driftui", experiment_name="sft-tiny")
    logged = []
    for e in payloads("trl-sft"):
        m = e["metrics"]
        # verl/trainer/sft_trainer_ray.py renames loss, grad_norm and lr so.
        d = {"train/loss": m["loss"], "train/grad_norm": m["grad_norm"],
             "train/lr": m["learning_rate"], "train/epoch": m["epoch"]}
        log.log(d, step=e["step"])
        logged.append({"step": e["step"], "metrics": d})
    log.finish()
    expected["verl-sft"] = logged


def main():
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "expected.json")
    expected = {}
    if os.path.exists(path):
        with open(path) as f:
            expected = json.load(f)
    wanted = sys.argv[1:] or ["trl"]
    runs = {"trl": run_trl, "llamafactory": run_llamafactory,
            "torchtune": run_torchtune, "verl": run_verl}
    for w in wanted:
        runs[w](expected)
        with open(path, "w") as f:
            json.dump(expected, f, indent=1, sort_keys=True)
            f.write("\n")


if __name__ == "__main__":
    main()
