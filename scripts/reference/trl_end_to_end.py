#!/usr/bin/env python3
"""The real TRL 1.16 trainers on SmolLM2-135M-Instruct, two steps, as fixtures.

Independent reference for driftui's end-to-end numbers. Each run trains the
GGUF weights driftui uses (dequantised by transformers, float32, CPU) on a few
fixed conversational rows of assets/demo/, one batch of all rows, no shuffle,
constant lr 1e-5, TRL's and transformers' defaults for everything not named in
`RUN_ARGS`, and writes tests/fixtures/trl/e2e-<run>.json.

    /root/trlref/bin/python scripts/reference/trl_end_to_end.py            # every run
    /root/trlref/bin/python scripts/reference/trl_end_to_end.py dpo sft    # some runs

Runs: sft, dpo (sigmoid), kto, simpo (CPO loss_type="simpo", cpo_alpha 0:
driftui's SimPO has no NLL term), cpo (sigmoid, cpo_alpha 1), orpo, dpo-lora
(PEFT r=16, alpha=32, all 7 projections, lora_A set by the formula in
`lora_a_init`, lora_B zero as PEFT does).

Nothing is re-implemented: the trainers are TRL's, subclassed only to observe
(`_Probe`): the collated batch of step 1, the per-token log-probs their forwards
return, and every trainable gradient just before `Trainer._clip_grad_norm` (so
before clipping and before the optimizer step).

JSON layout of a fixture (keys sorted; floats are float64 renderings of the
float32 values TRL computed, exact):

  "run", "trainer" (class), "trl_config" {key: value} (every algorithm key and
  every optimizer/schedule key, defaults included), "environment" {versions,
  cpu model, avx512f, torch cpu capability, threads, attn_implementation},
  "data" {"source": file, "lines": 1-based line numbers, "rows": the
  conversational rows given to TRL},
  "tokens": per row, TRL's own tokenization: prompt_ids and completion ids
     (DPO/CPO/ORPO: chosen_ids, rejected_ids; KTO: completion_ids, KL_completion_ids,
     label; SFT: input_ids with labels, -100 = not trained), plus
     "driftui_style": the same rows tokenized the way src/data/mod.rs does
     (chat template with SmolLM2's default system prompt, prompt = everything before
     the answer, completion = the answer and the end-of-turn tokens), and
     "equal_to_driftui_style": whether TRL's ids are the same,
  "batch": the step-1 batch as the collator made it (padded ids and masks),
  "steps": [step 1, step 2], each TRL's log_history entry (loss, grad_norm,
     learning_rate, every metric the trainer logs, epoch, step),
  "step1": {
     "logps": per-row sequence log-probs as the trainer computed them
        (DPO/KTO/SFT: sums over the completion/label tokens of the fused head's
        per-token log-probs, policy and reference; CPO/ORPO: the values
        concatenated_forward returned, length-averaged where TRL averages, with the
        token counts),
     "grad_norm_total": the pre-clip norm TRL returned (= steps[0].grad_norm),
     "grad_norms": {hf_param_name: L2 norm of its gradient, computed in float64},
     "grad_coords": {hf_param_name: [[index..., value], ...]} exact coordinates,
  },
  "seconds": wall time of the run on this machine.
"""
import copy
import json
import os
import platform
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import trl  # noqa: E402
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer  # noqa: E402
from trl.experimental.cpo import CPOConfig, CPOTrainer  # noqa: E402
from trl.experimental.orpo import ORPOConfig, ORPOTrainer  # noqa: E402

transformers.logging.set_verbosity_error()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_DIR = os.path.join(ROOT, "models/smollm2")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(ROOT, "tests/fixtures/trl")
SEED = 42
THREADS = 2

# One-word rows first (short sequences keep a CPU replay fast), plus one short
# full-sentence row so that length averaging and padding matter.
PREF_FILE, PREF_LINES = "assets/demo/value-gap-small.jsonl", None  # first 3 one-word rows + line 54
KTO_FILE, KTO_LINES = "assets/demo/kto.jsonl", None      # filled in: first 5 one-word rows + line 264
SFT_FILE, SFT_LINES = "assets/demo/sft.jsonl", None      # first 5 one-word rows + line 625

# Training arguments shared by every run. Everything else is the trainer's default.
RUN_ARGS = dict(
    max_steps=2,
    learning_rate=1e-5,
    lr_scheduler_type="constant",     # TrainingArguments default is "linear"
    warmup_steps=0,
    logging_steps=1,
    seed=SEED,
    bf16=False,                        # TRL's _BaseConfig turns bf16 on by default
    fp16=False,
    use_cpu=True,
    gradient_checkpointing=False,      # TRL default True; same numbers, slower
    train_sampling_strategy="sequential",
    report_to="none",
    save_strategy="no",
    dataloader_num_workers=0,
    disable_tqdm=True,
)

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def read_lines(path, lines):
    with open(os.path.join(ROOT, path)) as f:
        all_rows = [json.loads(x) for x in f]
    return [all_rows[n - 1] for n in lines], all_rows


def one_word(text):
    return "Answer with one word" in text


def preference_rows():
    _, all_rows = read_lines(PREF_FILE, [1])
    lines = [i + 1 for i, r in enumerate(all_rows) if one_word(r["prompt"])][:3] + [54]
    rows = [all_rows[n - 1] for n in lines]
    return lines, [
        {"prompt": [{"role": "user", "content": r["prompt"]}],
         "chosen": [{"role": "assistant", "content": r["chosen"]}],
         "rejected": [{"role": "assistant", "content": r["rejected"]}]}
        for r in rows
    ]


def kto_rows():
    _, all_rows = read_lines(KTO_FILE, [1])
    lines = [i + 1 for i, r in enumerate(all_rows) if one_word(r["prompt"])][:5] + [264]
    rows = [all_rows[n - 1] for n in lines]
    assert any(r["label"] for r in rows) and not all(r["label"] for r in rows)
    return lines, [
        {"prompt": [{"role": "user", "content": r["prompt"]}],
         "completion": [{"role": "assistant", "content": r["completion"]}],
         "label": r["label"]}
        for r in rows
    ]


def sft_rows():
    # driftui trains only the assistant turn of a `messages` row; TRL's equivalent
    # is the conversational prompt-completion form (completion_only_loss defaults to
    # True there), not a `messages` row (which TRL trains on every token).
    _, all_rows = read_lines(SFT_FILE, [1])
    lines = [i + 1 for i, r in enumerate(all_rows)
             if "messages" in r and one_word(r["messages"][0]["content"])][:5] + [625]
    rows = [all_rows[n - 1] for n in lines]
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
    return lines, [
        {"prompt": [r["messages"][0]], "completion": [r["messages"][1]]} for r in rows
    ]


def environment(model):
    cpu = "unknown"
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = line
    except OSError:
        pass
    return {
        "trl": trl.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": __import__("peft").__version__,
        "accelerate": __import__("accelerate").__version__,
        "datasets": __import__("datasets").__version__,
        "python": platform.python_version(),
        "cpu_model": cpu,
        "avx512f": " avx512f" in flags,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "attn_implementation": model.config._attn_implementation,
        "model": f"models/smollm2/{GGUF} via transformers gguf_file=, float32",
    }


def driftui_style(tok, prompt_msgs, answer_msgs):
    """src/data/mod.rs::tokenize_prompt_completion: render [prompt, answer] with the
    model's template, prompt text = the render of the prompt with the generation
    prompt, completion text = the rest; each encoded on its own."""
    before = tok.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
    through = tok.apply_chat_template(prompt_msgs + answer_msgs, tokenize=False)
    assert through.startswith(before)
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    return enc(before), enc(through[len(before):])


def lora_a_init(layer, proj_index, shape):
    """Deterministic lora_A (instead of PEFT's seeded kaiming init, which Rust
    cannot replay): A[i, j] = (((7 i + 13 j + 3 layer + 5 p) mod 17) - 8) / 256,
    p = index of the projection in LORA_TARGETS. Exact in float32."""
    i = torch.arange(shape[0]).unsqueeze(1)
    j = torch.arange(shape[1]).unsqueeze(0)
    return ((((7 * i + 13 * j + 3 * layer + 5 * proj_index) % 17) - 8).float() / 256.0)


def load_model():
    """SmolLM2 with the GGUF's weights dequantised by transformers, as a plain float32
    model. transformers marks a model loaded with `gguf_file=` as quantized (its config
    keeps a `quantization_config`), and `Trainer` refuses to fine-tune it, although its
    weights are ordinary float32 tensors; so the same tensors are loaded into a model
    built from the same config minus that entry (what saving and reloading it would give)."""
    q = AutoModelForCausalLM.from_pretrained(MODEL_DIR, gguf_file=GGUF, dtype=torch.float32)
    cfg = copy.deepcopy(q.config)
    del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(q.state_dict(), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    model.tie_weights()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    for (n, a), (_, b) in zip(q.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), n
    model.generation_config = copy.deepcopy(q.generation_config)
    assert not getattr(model, "is_quantized", False)
    model.eval()
    return model


def to_list(t):
    return t.detach().cpu().tolist()


def as_float(x):
    return float(x.item()) if torch.is_tensor(x) else float(x)


def probe(cls):
    """Subclass that observes step 1 and changes nothing."""

    class _Probe(cls):
        def compute_loss(self, model, inputs, *args, **kwargs):
            if self.state.global_step == 0 and not hasattr(self, "probe_batch"):
                self.probe_batch = {k: (v.detach().clone() if torch.is_tensor(v) else v) for k, v in inputs.items()}
            return super().compute_loss(model, inputs, *args, **kwargs)

        def concatenated_forward(self, model, batch):  # CPO / ORPO only
            out = super().concatenated_forward(model, batch)
            if self.state.global_step == 0 and not hasattr(self, "probe_forward"):
                self.probe_forward = tuple(o.detach().clone() for o in out[:2]) + (out[4].detach().clone(),)
            return out

        def _clip_grad_norm(self, model):
            if self.state.global_step == 0 and not hasattr(self, "probe_grads"):
                self.probe_grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                                    if p.requires_grad and p.grad is not None}
            norm = super()._clip_grad_norm(model)
            if self.state.global_step == 0 and not hasattr(self, "probe_norm"):
                self.probe_norm = as_float(norm)
            return norm

    _Probe.__name__ = cls.__name__
    return _Probe


class ForwardRecorder:
    """Wraps the fused-head forward `add_fused_lm_head` put on a model instance and
    keeps, during step 1, what each call returned."""

    def __init__(self, trainer, module, tag):
        self.trainer, self.tag, self.calls = trainer, tag, []
        inner = module.forward

        def forward(*args, **kwargs):
            out = inner(*args, **kwargs)
            if kwargs.get("fused_lm_head") and trainer.state.global_step == 0:
                self.calls.append({
                    "tag": tag,
                    "grad": torch.is_grad_enabled(),
                    "input_ids": kwargs["input_ids"].detach().clone(),
                    "labels": kwargs["labels"].detach().clone(),
                    "log_probs": out.log_probs.detach().clone(),
                })
            return out

        module.forward = forward


def grad_report(grads, coords):
    norms = {n: float(g.double().norm()) for n, g in grads.items()}
    picked = {}
    for name, idxs in coords.items():
        if name in grads:
            g = grads[name]
            picked[name] = [list(ix) + [float(g[ix].item())] for ix in idxs]
    return norms, picked


def coords_for(token_id, lora):
    if lora:
        p = "base_model.model.model.layers"
        return {
            f"{p}.0.self_attn.q_proj.lora_B.default.weight": [(0, 0), (1, 2), (575, 15)],
            f"{p}.0.self_attn.q_proj.lora_A.default.weight": [(0, 0), (3, 100)],
            f"{p}.29.mlp.down_proj.lora_B.default.weight": [(0, 0), (5, 7)],
            f"{p}.15.self_attn.v_proj.lora_B.default.weight": [(0, 0), (100, 3)],
        }
    return {
        "model.embed_tokens.weight": [(token_id, 0), (token_id, 1), (token_id, 2), (token_id, 575)],
        "model.layers.0.self_attn.q_proj.weight": [(0, 0), (1, 2), (100, 200)],
        "model.layers.29.mlp.down_proj.weight": [(0, 0), (5, 1000)],
        "model.norm.weight": [(0,), (1,), (2,), (575,)],
        "model.layers.0.input_layernorm.weight": [(0,), (7,)],
    }


def log_steps(trainer):
    keep = []
    for e in trainer.state.log_history:
        if "loss" in e:
            keep.append({k: v for k, v in e.items()})
    return keep


def cfg_dict(args, keys):
    out = {}
    for k in keys:
        v = getattr(args, k)
        out[k] = v if isinstance(v, (int, float, str, bool, list, type(None))) else str(v)
    return out


COMMON_KEYS = ["learning_rate", "lr_scheduler_type", "warmup_steps", "optim", "adam_beta1", "adam_beta2",
               "adam_epsilon", "weight_decay", "max_grad_norm", "per_device_train_batch_size",
               "gradient_accumulation_steps", "max_steps", "seed", "bf16", "gradient_checkpointing",
               "train_sampling_strategy", "average_tokens_across_devices", "logging_steps"]


def seq_sums(call):
    return to_list(call["log_probs"].double().sum(dim=1))


def run(name, base, tok):
    t0 = time.time()
    model = copy.deepcopy(base)
    ref = None
    out = {"run": name}
    common = dict(RUN_ARGS, output_dir=f"/tmp/trl-e2e-{name}")

    if name in ("dpo", "dpo-lora", "simpo", "cpo", "orpo"):
        lines, rows = preference_rows()
        out["data"] = {"source": PREF_FILE, "lines": lines, "rows": rows}
        common["per_device_train_batch_size"] = len(rows)
    elif name == "kto":
        lines, rows = kto_rows()
        out["data"] = {"source": KTO_FILE, "lines": lines, "rows": rows}
        common["per_device_train_batch_size"] = len(rows)
    else:
        lines, rows = sft_rows()
        out["data"] = {"source": SFT_FILE, "lines": lines, "rows": rows}
        common["per_device_train_batch_size"] = len(rows)
    ds = Dataset.from_list(rows)

    if name in ("dpo", "dpo-lora"):
        args = DPOConfig(**common, beta=0.1, loss_type=["sigmoid"])
        kw = {}
        if name == "dpo-lora":
            from peft import LoraConfig
            kw["peft_config"] = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS,
                                           task_type="CAUSAL_LM")
        else:
            ref = copy.deepcopy(base)  # what DPOTrainer loads itself when ref_model is None
        trainer = probe(DPOTrainer)(model=model, ref_model=ref, args=args, train_dataset=ds,
                                    processing_class=tok, **kw)
        keys = ["beta", "loss_type", "loss_weights", "label_smoothing", "max_length", "truncation_mode",
                "precompute_ref_log_probs", "use_weighting", "ld_alpha", "f_divergence_type", "disable_dropout"]
    elif name == "kto":
        args = KTOConfig(**common, beta=0.1)
        ref = copy.deepcopy(base)
        trainer = probe(KTOTrainer)(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
        keys = ["beta", "loss_type", "desirable_weight", "undesirable_weight", "max_length",
                "precompute_ref_log_probs", "disable_dropout"]
    elif name in ("simpo", "cpo"):
        if name == "simpo":
            args = CPOConfig(**common, loss_type="simpo", beta=2.0, simpo_gamma=0.5, cpo_alpha=0.0)
        else:
            args = CPOConfig(**common, loss_type="sigmoid", beta=0.1, cpo_alpha=1.0)
        trainer = probe(CPOTrainer)(model=model, args=args, train_dataset=ds, processing_class=tok)
        keys = ["beta", "loss_type", "label_smoothing", "cpo_alpha", "simpo_gamma", "alpha", "max_length",
                "max_completion_length", "disable_dropout"]
    elif name == "orpo":
        args = ORPOConfig(**common, beta=0.1)
        trainer = probe(ORPOTrainer)(model=model, args=args, train_dataset=ds, processing_class=tok)
        keys = ["beta", "max_length", "max_completion_length", "padding_value", "disable_dropout"]
    elif name == "sft":
        args = SFTConfig(**common)
        trainer = probe(SFTTrainer)(model=model, args=args, train_dataset=ds, processing_class=tok)
        keys = ["max_length", "truncation_mode", "completion_only_loss", "assistant_only_loss", "loss_type",
                "packing", "padding_free", "shuffle_dataset"]
    else:
        raise SystemExit(f"unknown run {name}")

    out["trainer"] = type(trainer).__name__
    out["trl_config"] = cfg_dict(trainer.args, keys + COMMON_KEYS)
    out["trl_config"]["optimizer"] = "torch.optim.AdamW(fused=True) via optim=adamw_torch_fused" \
        if trainer.args.optim == "adamw_torch_fused" else str(trainer.args.optim)
    out["environment"] = environment(model)
    if name == "sft":
        # None in the config means: decided by the dataset's form (sft_trainer.py:961-964)
        out["trl_config"]["completion_only_loss_resolved"] = trainer.completion_only_loss

    lora = name == "dpo-lora"
    if lora:
        # Deterministic lora_A, so a replay can rebuild the adapter (see lora_a_init).
        with torch.no_grad():
            for n, p in trainer.model.named_parameters():
                if ".lora_A.default.weight" in n:
                    layer = int(n.split(".layers.")[1].split(".")[0])
                    proj = next(i for i, t in enumerate(LORA_TARGETS) if f".{t}." in n)
                    p.copy_(lora_a_init(layer, proj, p.shape))
                if ".lora_B.default.weight" in n:
                    assert torch.count_nonzero(p) == 0
        out["lora"] = {"r": 16, "lora_alpha": 32, "scaling": 2.0, "lora_dropout": 0.0, "targets": LORA_TARGETS,
                       "lora_A_init": lora_a_init.__doc__.strip().replace("\n   ", ""),
                       "lora_B_init": "zeros (PEFT default)",
                       "shapes": "lora_A [r, in_features], lora_B [out_features, r]; "
                                 "y = W x + scaling * B (A x), scaling = lora_alpha / r",
                       "reference": "the base model: DPOTrainer disables the adapter (no ref_model is built)"}

    # Record the forwards of step 1 (fused-head trainers)
    recorders = []
    inner_policy = trainer.model.get_base_model() if lora else trainer.model
    if name in ("dpo", "dpo-lora", "kto", "sft"):
        recorders.append(ForwardRecorder(trainer, inner_policy, "policy"))
        if getattr(trainer, "ref_model", None) is not None:
            recorders.append(ForwardRecorder(trainer, trainer.ref_model, "reference"))

    out["tokens"] = tokens_of(name, trainer, tok, rows)

    torch.manual_seed(SEED)
    trainer.train()

    # What the optimizer really was (TrainingArguments' defaults, as built by Trainer)
    out["optimizer"] = {
        "class": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__module__ + "."
        + type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
        "param_groups": [
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()
             if k in ("lr", "betas", "eps", "weight_decay", "fused", "foreach", "amsgrad", "maximize")}
            | {"n_params": len(g["params"])}
            for g in trainer.optimizer.param_groups
        ],
        "lr_scheduler": type(trainer.lr_scheduler).__name__,
    }
    out["batch"] = {k: to_list(v) for k, v in trainer.probe_batch.items() if torch.is_tensor(v)}
    out["steps"] = log_steps(trainer)
    step1 = {"grad_norm_total": trainer.probe_norm}
    step1["logps"] = logps_of(name, trainer, recorders)
    support_id = tok("support", add_special_tokens=False)["input_ids"][0]
    norms, coords = grad_report(trainer.probe_grads, coords_for(support_id, lora))
    step1["grad_norms"] = norms
    step1["grad_norm_from_parts"] = sum(v * v for v in norms.values()) ** 0.5
    step1["grad_coords"] = coords
    step1["embedding_token"] = {"text": "support", "id": support_id}
    out["step1"] = step1
    out["seconds"] = round(time.time() - t0, 1)
    return out


def tokens_of(name, trainer, tok, rows):
    ds = trainer.train_dataset
    per_row = []
    for i, r in enumerate(rows):
        e = ds[i]
        if name in ("dpo", "dpo-lora"):
            trl_ids = {"prompt_ids": e["prompt_ids"], "chosen_ids": e["chosen_ids"], "rejected_ids": e["rejected_ids"]}
            pc, cc = driftui_style(tok, r["prompt"], r["chosen"])
            _, rc = driftui_style(tok, r["prompt"], r["rejected"])
            d = {"prompt_ids": pc, "chosen_ids": cc, "rejected_ids": rc}
        elif name in ("simpo", "cpo", "orpo"):
            # tokenize_row: labels are -100 over the prompt
            def split(ids, labels):
                n = sum(1 for x in labels if x == -100)
                return ids[:n], ids[n:]
            p1, c1 = split(e["chosen_input_ids"], e["chosen_labels"])
            p2, c2 = split(e["rejected_input_ids"], e["rejected_labels"])
            assert p1 == p2
            trl_ids = {"prompt_ids": p1, "chosen_ids": c1, "rejected_ids": c2}
            pc, cc = driftui_style(tok, r["prompt"], r["chosen"])
            _, rc = driftui_style(tok, r["prompt"], r["rejected"])
            d = {"prompt_ids": pc, "chosen_ids": cc, "rejected_ids": rc}
        elif name == "kto":
            trl_ids = {"prompt_ids": e["prompt_ids"], "completion_ids": e["completion_ids"],
                       "KL_completion_ids": e["KL_completion_ids"], "label": e["label"]}
            pc, cc = driftui_style(tok, r["prompt"], r["completion"])
            d = {"prompt_ids": pc, "completion_ids": cc}
        else:  # sft
            trl_ids = {"input_ids": e["input_ids"], "labels": e["labels"]}
            pc, cc = driftui_style(tok, r["prompt"], r["completion"])
            d = {"input_ids": pc + cc, "labels": [-100] * len(pc) + cc}
        same = all(trl_ids[k] == v for k, v in d.items())
        per_row.append({"trl": trl_ids, "driftui_style": d, "equal_to_driftui_style": same})
    return per_row


def logps_of(name, trainer, recorders):
    calls = [c for r in recorders for c in r.calls]
    if name in ("simpo", "cpo", "orpo"):
        chosen, rejected, nll = trainer.probe_forward
        b = trainer.probe_batch
        count = lambda lab: to_list((lab[:, 1:] != -100).sum(-1))  # noqa: E731
        averaged = name in ("simpo", "orpo")
        return {"policy_chosen": to_list(chosen.double()), "policy_rejected": to_list(rejected.double()),
                "averaged_over_tokens": averaged,
                "chosen_tokens": count(b["chosen_labels"]), "rejected_tokens": count(b["rejected_labels"]),
                "nll_loss": as_float(nll)}
    if name == "sft":
        (c,) = [c for c in calls if c["grad"]]
        return {"policy": seq_sums(c), "tokens": to_list((c["labels"][:, 1:] != -100).sum(-1))}
    if name in ("dpo", "dpo-lora"):
        pol = [c for c in calls if c["tag"] == "policy" and c["grad"]]
        refc = [c for c in calls if (c["tag"] == "reference") or (c["tag"] == "policy" and not c["grad"])]
        assert len(pol) == 1 and len(refc) == 1, (len(pol), len(refc))
        p, r = seq_sums(pol[0]), seq_sums(refc[0])
        n = len(p) // 2
        return {"policy_chosen": p[:n], "policy_rejected": p[n:], "reference_chosen": r[:n],
                "reference_rejected": r[n:],
                "tokens": to_list((pol[0]["labels"][:, 1:] != -100).sum(-1)),
                "reference_equals_policy_bitwise": bool(torch.equal(pol[0]["log_probs"], refc[0]["log_probs"]))}
    if name == "kto":
        b = trainer.probe_batch
        out = {}
        for c in calls:
            is_kl = c["input_ids"].shape == b["KL_input_ids"].shape and torch.equal(c["input_ids"], b["KL_input_ids"])
            key = c["tag"] + ("_kl" if is_kl else "")
            assert key not in out
            out[key] = seq_sums(c)
        out["label"] = to_list(b["label"])
        out["tokens"] = to_list((b["completion_mask"][:, 1:]).sum(-1))
        out["kl_tokens"] = to_list((b["KL_completion_mask"][:, 1:]).sum(-1))
        return out
    raise AssertionError(name)


ALL_RUNS = ["sft", "dpo", "kto", "simpo", "cpo", "orpo", "dpo-lora"]


def main():
    runs = sys.argv[1:] or ALL_RUNS
    torch.set_num_threads(THREADS)
    os.makedirs(OUT, exist_ok=True)
    t = time.time()
    tok = AutoTokenizer.from_pretrained(MODEL_DIR, gguf_file=GGUF)
    base = load_model()
    print(f"loaded in {time.time() - t:.1f} s", file=sys.stderr)
    for name in runs:
        fresh_tok = copy.deepcopy(tok)
        out = run(name, base, fresh_tok)
        path = os.path.join(OUT, f"e2e-{name}.json")
        with open(path, "w") as f:
            json.dump(out, f, indent=1, sort_keys=True, allow_nan=False)
            f.write("\n")
        s = out["steps"]
        print(f"{name}: {out['seconds']} s, loss {[e['loss'] for e in s]}, grad_norm {[e['grad_norm'] for e in s]}, "
              f"{os.path.getsize(path)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
