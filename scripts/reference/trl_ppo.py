#!/usr/bin/env python3
"""TRL's own PPO update on fixed tensors: rewards, GAE, whitening, clipped losses.

TRL 1.16 has no PPO any more (it was removed in 1.13); the last TRL with
`trl.experimental.ppo.PPOTrainer` is 1.12.0. That version is fetched as a
wheel (not installed into the 1.16 venv) and put first on the path:

    /root/trlref/bin/pip download --no-deps trl==1.12.0 -d /tmp/trlwheels
    # sha256 9c8f117b21a941edbc85744f5a341c9453d38e81f24ae81d3c6e9b9ca3b96409
    mkdir -p /tmp/trl112 && unzip -q -o /tmp/trlwheels/trl-1.12.0-py3-none-any.whl -d /tmp/trl112
    PYTHONPATH=/tmp/trl112 /root/trlref/bin/python scripts/reference/trl_ppo.py > tests/fixtures/trl/ppo.json

The real `PPOTrainer.train` runs, unbound, on a stand-in `self` (the real
class made with `object.__new__`, no `__init__`) for one update. Everything
that touches a model is replaced by fixed tensors: `batch_generation` hands
back fixed responses, `selective_log_softmax` the fixed old, reference and
new log-probabilities, `get_reward` the fixed values and scores, `forward`
the new value predictions. New log-probs and value predictions are leaves
with gradients; the fake accelerator's `backward` records each micro-batch's
loss and the gradients TRL's autograd gives them. Everything runs in float64
(clip fractions are float32 in TRL, `(...).float()`).

The pad token (0) differs from the stop token (2), as driftui assumes.

JSON layout (keys sorted):

  "versions": {"trl", "torch", "transformers", "python"}
  "cases": {name: case}
     "config"      the PPOConfig keys set (TRL's names)
     "rollouts"    rows, width, responses (token ids), logprobs, ref_logprobs,
                   values (the value model's per-position outputs, padded
                   positions included), scores (the reward model's, before
                   the missing-EOS penalty), seq_len (TRL's sequence_lengths)
     "gae_advantages"   advantages before whitening (rows × width)
     "advantages"       after whitening and masking
     "whitened_rewards" (whiten_rewards only) the rewards GAE used
     "micro_batches"    one per backward, in order: {"epoch", "rows" (indices
                   into the rollouts), "new_logprobs", "vpred" (the leaves
                   fed in), "loss", "d_new_logprobs", "d_vpred"}
     "permutations"     the np.random.permutation of each PPO epoch
     "metrics"     what TRL logs for the update (eps and episode left out)
"""
import contextlib
import json
import platform
import sys
import types
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")

import transformers  # noqa: E402
import trl  # noqa: E402
from trl.experimental.ppo import ppo_trainer as ppo_mod  # noqa: E402

assert trl.__version__ == "1.12.0", f"needs TRL 1.12.0 (the last with PPO), found {trl.__version__}"

torch.set_default_dtype(torch.float64)
F64 = torch.float64

PAD, EOS = 0, 2
CONTEXT = 3
# Four responses of width 5: EOS at 2, none (truncated), EOS at 1, EOS at 3.
RESPONSES = [
    [5, 6, EOS, PAD, PAD],
    [7, 8, 9, 10, 11],
    [5, EOS, PAD, PAD, PAD],
    [6, 7, 8, EOS, PAD],
]
LOGPROBS = [
    [-1.2, -0.7, -0.3, -5.0, -5.0],
    [-2.1, -0.4, -1.6, -0.9, -2.7],
    [-0.5, -0.2, -4.0, -4.0, -4.0],
    [-1.0, -1.5, -0.8, -0.6, -3.0],
]
REF_LOGPROBS = [
    [-1.0, -0.9, -0.35, -6.0, -6.0],
    [-2.0, -0.6, -1.2, -1.1, -2.5],
    [-0.8, -0.1, -3.0, -3.0, -3.0],
    [-1.1, -1.3, -0.9, -0.5, -2.0],
]
VALUES = [
    [0.10, 0.25, -0.05, 0.40, 0.70],
    [-0.20, 0.05, 0.15, 0.30, -0.10],
    [0.35, 0.20, 0.60, -0.30, 0.90],
    [0.00, -0.15, 0.10, 0.22, 0.33],
]
SCORES = [1.5, 0.3, -0.8, 0.9]
# New log-probs and value predictions per PPO epoch (the fake model moves
# between epochs); chosen so some ratios and values fall outside the clips.
NEW_LOGPROBS = [
    [[-1.0, -0.9, -0.2, 0.0, 0.0], [-1.7, -0.45, -1.9, -0.5, -2.75],
     [-0.55, -0.1, 0.0, 0.0, 0.0], [-1.3, -1.2, -0.8, -0.7, 0.0]],
    [[-0.9, -1.0, -0.25, 0.0, 0.0], [-1.5, -0.5, -2.2, -0.4, -2.9],
     [-0.6, -0.05, 0.0, 0.0, 0.0], [-1.4, -1.1, -0.75, -0.9, 0.0]],
]
VPRED = [
    [[0.20, 0.05, 0.50, 0.45, 0.0], [-0.50, 0.10, 0.12, 0.60, -0.05],
     [0.30, 0.55, 0.40, 0.0, 0.0], [0.05, -0.40, 0.15, 0.60, 0.10]],
    [[0.30, 0.15, 0.70, 0.30, 0.0], [-0.40, 0.20, 0.20, 0.55, 0.00],
     [0.45, 0.65, 0.50, 0.0, 0.0], [0.10, -0.30, 0.25, 0.50, 0.20]],
]


class Recorder:
    def __init__(self):
        self.micro = []
        self.logged = None
        self.whiten_calls = []
        self.permutations = []
        self.sls_calls = 0
        self.train_forwards = 0
        self.current = None  # (epoch, rows, new_leaf, vpred_leaf)


REC = Recorder()


def fake_batch_generation(model, queries, bs, pad_token_id, generation_config):
    responses = torch.tensor(RESPONSES)
    qr = torch.cat([queries, responses], 1)
    logits = torch.zeros(len(RESPONSES), len(RESPONSES[0]), 7)  # tag: vocab 7
    return qr, logits


def fake_forward(model, query_responses, pad_token_id):
    rows = [int(q) - 100 for q in query_responses[:, 0]]
    width = len(RESPONSES[0])
    if model == "ref":
        return types.SimpleNamespace(logits=torch.zeros(len(rows), CONTEXT + width, 8))  # tag: vocab 8
    epoch = REC.train_forwards // 2  # two micro-batches per epoch
    REC.train_forwards += 1
    new = torch.tensor([NEW_LOGPROBS[epoch][r] for r in rows], requires_grad=True)
    vp = torch.tensor([VPRED[epoch][r] for r in rows], requires_grad=True)
    vpred_temp = torch.cat([torch.zeros(len(rows), CONTEXT - 1), vp, torch.zeros(len(rows), 1)], 1).unsqueeze(-1)
    REC.current = (epoch, rows, new, vp)
    return types.SimpleNamespace(logits=torch.zeros(len(rows), CONTEXT + width, 9)), vpred_temp  # tag: vocab 9


def fake_selective_log_softmax(logits, index):
    vocab = logits.shape[-1]
    if vocab == 7:
        return torch.tensor(LOGPROBS)
    if vocab == 8:
        return torch.tensor(REF_LOGPROBS)
    assert vocab == 9
    return REC.current[2]


def fake_get_reward(model, query_responses, pad_token_id, context_length):
    n = query_responses.shape[0]
    if model == "value":
        full = torch.cat([torch.zeros(n, CONTEXT - 1), torch.tensor(VALUES), torch.zeros(n, 1)], 1).unsqueeze(-1)
        return full, None, None
    assert model == "reward"
    return None, torch.tensor(SCORES), None


real_whiten = ppo_mod.masked_whiten


def recording_whiten(values, mask, shift_mean=True):
    out = real_whiten(values, mask, shift_mean)
    REC.whiten_calls.append((values.tolist(), out.tolist()))
    return out


real_permutation = np.random.permutation


def recording_permutation(n):
    p = real_permutation(n)
    REC.permutations.append([int(x) for x in p])
    return p


class FakeAccelerator:
    device = torch.device("cpu")

    def print(self, *a, **k):
        pass

    def unwrap_model(self, m):
        return m

    def accumulate(self, m):
        return contextlib.nullcontext()

    def gather_for_metrics(self, x):
        return x

    def backward(self, loss):
        epoch, rows, new, vp = REC.current
        loss.backward()
        REC.micro.append({
            "epoch": epoch, "rows": rows,
            "new_logprobs": new.tolist(), "vpred": vp.tolist(),
            "loss": loss.item(),
            "d_new_logprobs": new.grad.tolist(), "d_vpred": vp.grad.tolist(),
        })


@contextlib.contextmanager
def fake_unwrap(model, accelerator, **kwargs):
    yield types.SimpleNamespace(policy="policy")


def run_case(cfg):
    REC.__init__()
    np.random.seed(7)
    rows = len(RESPONSES)
    per_device, ga = 2, 2
    args = types.SimpleNamespace(
        response_length=len(RESPONSES[0]), temperature=cfg.get("temperature", 0.7),
        local_rollout_forward_batch_size=rows, missing_eos_penalty=cfg.get("missing_eos_penalty"),
        kl_estimator=cfg.get("kl_estimator", "k1"), kl_coef=cfg.get("kl_coef", 0.05),
        whiten_rewards=cfg.get("whiten_rewards", False), gamma=cfg.get("gamma", 1.0), lam=cfg.get("lam", 0.95),
        num_ppo_epochs=2, num_mini_batches=1, local_batch_size=rows, local_mini_batch_size=rows,
        per_device_train_batch_size=per_device, gradient_accumulation_steps=ga, cliprange=cfg.get("cliprange", 0.2),
        cliprange_value=cfg.get("cliprange_value", 0.2), vf_coef=cfg.get("vf_coef", 0.1), num_total_batches=1,
        batch_size=rows, total_episodes=rows, logging_steps=1, eval_steps=None, save_steps=None,
        ds3_gather_for_generation=True, num_sample_generations=0,
    )
    s = object.__new__(ppo_mod.PPOTrainer)
    s.args = args
    s.accelerator = FakeAccelerator()
    s.optimizer = types.SimpleNamespace(step=lambda: None, zero_grad=lambda: None)
    s.model = types.SimpleNamespace(policy="policy", value_model="value", train=lambda: None)
    s.ref_model = "ref"
    s.reward_model = "reward"
    s.processing_class = types.SimpleNamespace(pad_token_id=PAD, eos_token_id=EOS)
    s.dataloader = [{"input_ids": torch.tensor([[100 + r, 20, 21] for r in range(rows)])}]
    s.stop_token_id = EOS
    s.train_dataset_len = rows
    s.state = types.SimpleNamespace(global_step=0, episode=0, max_steps=0, num_train_epochs=0, epoch=0)
    s.callback_handler = types.SimpleNamespace(on_train_begin=lambda *a: s.control, on_step_end=lambda *a: s.control,
                                               on_train_end=lambda *a: s.control)
    s.control = types.SimpleNamespace(should_save=False)
    s.lr_scheduler = types.SimpleNamespace(get_last_lr=lambda: [1e-5], step=lambda: None)
    s.is_deepspeed_enabled = False

    def log(metrics):
        REC.logged = dict(metrics)
    s.log = log
    ppo_mod.PPOTrainer.train(s)
    adv_call = [c for c in REC.whiten_calls][-1]
    out = {
        "config": cfg,
        "rollouts": {"rows": rows, "width": len(RESPONSES[0]), "responses": RESPONSES, "logprobs": LOGPROBS,
                     "ref_logprobs": REF_LOGPROBS, "values": VALUES, "scores": SCORES,
                     "seq_len": [2, 4, 1, 3], "context_length": CONTEXT, "eos": EOS, "pad": PAD},
        "gae_advantages": adv_call[0],
        "advantages": [[0.0 if t > sl else a for t, a in enumerate(row)]
                       for row, sl in zip(adv_call[1], [2, 4, 1, 3], strict=True)],
        "micro_batches": REC.micro,
        "permutations": REC.permutations,
        "metrics": {k: v for k, v in REC.logged.items() if k not in ("eps", "episode")},
    }
    if cfg.get("whiten_rewards"):
        out["whitened_rewards"] = REC.whiten_calls[0][1]
    return out


def main():
    ppo_mod.batch_generation = fake_batch_generation
    ppo_mod.forward = fake_forward
    ppo_mod.selective_log_softmax = fake_selective_log_softmax
    ppo_mod.get_reward = fake_get_reward
    ppo_mod.masked_whiten = recording_whiten
    ppo_mod.unwrap_model_for_generation = fake_unwrap
    np.random.permutation = recording_permutation
    cases = {
        "k1_eos_penalty": run_case({"kl_estimator": "k1", "missing_eos_penalty": 1.0, "stop_token": "eos"}),
        "k3_whiten_rewards": run_case({"kl_estimator": "k3", "whiten_rewards": True, "stop_token": "eos",
                                       "kl_coef": 0.2, "gamma": 0.99, "lam": 0.9}),
        "tight_clips": run_case({"kl_estimator": "k1", "stop_token": "eos", "cliprange": 0.05,
                                 "cliprange_value": 0.05, "vf_coef": 0.5}),
    }
    out = {
        "versions": {"trl": trl.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "cases": cases,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
