#!/usr/bin/env python3
"""TRL 1.16's reward-model loss and GRPO on fixed tensors, with gradients.

    /root/trlref/bin/python scripts/reference/trl_rl.py > tests/fixtures/trl/rl.json

As trl_objectives.py does, the real methods run unbound on a stand-in
`self` (the real class made with `object.__new__`):

- `RewardTrainer.compute_loss` with a fake model whose logits are the given
  scores (leaves with gradients);
- `GRPOTrainer._generate_and_score_completions` with the prompt
  tokenization, generation and reward functions replaced by fixed lists, so
  TRL's own code groups the rewards, computes the advantages and logs the
  reward and completion-length metrics;
- `GRPOTrainer._compute_loss` for every loss type, with
  `_get_per_token_logps_and_entropies` handing back fixed per-token
  log-probabilities (a leaf) and entropies.

Float64 throughout.

JSON layout (keys sorted):

  "versions"
  "reward": {name: {"chosen", "rejected", "center_rewards_coefficient",
             "loss", "d_chosen", "d_rejected", "metrics"}}
  "grpo_advantages": {name: {"num_generations", "scale_rewards", "rewards"
             (null: the reward function returned None), "completion_ids",
             "eos", "advantages", "metrics"}}
  "grpo_loss": {name: {"config" (TRL's keys), "logprobs", "old_logprobs"
             (null: none, TRL uses logprobs.detach()), "ref_logprobs",
             "entropies", "mask", "advantages", "num_items_in_batch",
             "gradient_accumulation_steps", "loss", "d_logprobs", "metrics"}}
"""
import json
import platform
import sys
import types
import warnings
from collections import defaultdict, deque

import torch

warnings.filterwarnings("ignore")

import transformers  # noqa: E402
import trl  # noqa: E402
from trl.trainer.grpo_trainer import GRPOTrainer  # noqa: E402
from trl.trainer.reward_trainer import RewardTrainer  # noqa: E402

torch.set_default_dtype(torch.float64)


class Accel:
    device = torch.device("cpu")
    num_processes = 1
    process_index = 0
    sync_gradients = True

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x


def reward_case(chosen, rejected, center):
    s = object.__new__(RewardTrainer)
    s.model = types.SimpleNamespace(training=True)
    s.accelerator = Accel()
    s.args = types.SimpleNamespace(center_rewards_coefficient=center)
    s._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    s._total_train_tokens = 0
    s._tp_size = 1
    c = torch.tensor(chosen, requires_grad=True)
    r = torch.tensor(rejected, requires_grad=True)

    def model(**inputs):
        return types.SimpleNamespace(logits=torch.cat([c, r]).unsqueeze(-1))

    n = len(chosen)
    inputs = {"input_ids": torch.ones(2 * n, 3, dtype=torch.long),
              "attention_mask": torch.ones(2 * n, 3, dtype=torch.long)}
    loss = RewardTrainer.compute_loss(s, model, inputs)
    loss.backward()
    metrics = {k: v[-1] for k, v in s._metrics["train"].items() if k != "num_tokens"}
    return {"chosen": chosen, "rejected": rejected, "center_rewards_coefficient": center,
            "loss": loss.item(), "d_chosen": c.grad.tolist(), "d_rejected": r.grad.tolist(),
            "metrics": metrics}


EOS, PAD = 2, 0


def advantages_case(rewards, num_generations, scale, completion_ids, max_len):
    s = object.__new__(GRPOTrainer)
    n = len(rewards)
    s.accelerator = Accel()
    s.model = types.SimpleNamespace(training=True, is_gradient_checkpointing=False)
    s.args = types.SimpleNamespace(steps_per_generation=1, gradient_accumulation_steps=1,
                                   gradient_checkpointing_kwargs=None, per_device_train_batch_size=n)
    s.environment_factories = None
    s.environments = None
    s.tools = None
    s.rollout_func = None
    s.use_vllm = False
    s.use_transformers_continuous_batching = False
    s.vllm_importance_sampling_correction = False
    s.num_iterations = 1
    s.beta = 0.0
    s.ref_model = None
    s.num_generations = num_generations
    s.num_generations_eval = num_generations
    s.multi_objective_aggregation = "sum_then_normalize"
    s.scale_rewards = scale
    s.reward_weights = torch.tensor([1.0])
    s.reward_func_names = ["judge"]
    s.mask_truncated_completions = False
    s.pad_to_multiple_of = None
    s.eos_token_ids = [EOS]
    s._tokenizer = types.SimpleNamespace(pad_token_id=PAD)
    s.processing_class = types.SimpleNamespace(batch_decode=lambda ids, **k: [f"c{i}" for i in range(len(ids))])
    s.state = types.SimpleNamespace(num_input_tokens_seen=0)
    s._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    s._logs = {"images": deque(), "prompt": deque(), "completion": deque(),
               "rewards": defaultdict(deque), "advantages": deque(), "extra": defaultdict(deque)}
    s._pending_extra_logs = defaultdict(list)
    s._pending_metrics = defaultdict(list)
    s.log_multimodal = False
    s._is_vlm = False
    prompt_ids = [[10 + i // num_generations, 11] for i in range(n)]
    s._tokenize_prompts = lambda prompts: (prompt_ids, None, {})
    s._generate_single_turn = lambda *a, **k: (completion_ids, None)

    def rewards_fn(inputs, prompts, completions, completion_ids_list):
        return torch.tensor([[float("nan") if r is None else r] for r in rewards])
    s._calculate_rewards = rewards_fn
    s._get_per_token_logps_and_entropies = lambda *a, **k: (None, None, None)
    inputs = [{"prompt": f"p{i // num_generations}"} for i in range(n)]
    out = GRPOTrainer._generate_and_score_completions(s, inputs)
    metrics = {k: v[-1] for k, v in s._metrics["train"].items()}
    return {"num_generations": num_generations, "scale_rewards": scale, "rewards": rewards,
            "completion_ids": completion_ids, "eos": EOS, "max_completion_length": max_len,
            "advantages": out["advantages"].tolist(), "metrics": metrics}


def loss_case(cfg, logprobs, old, ref, entropies, mask, advantages, ga, num_items):
    s = object.__new__(GRPOTrainer)
    s.accelerator = Accel()
    s.model = types.SimpleNamespace(training=True)
    s.loss_type = cfg["loss_type"]
    s.beta = cfg.get("beta", 0.0)
    s.epsilon_low = cfg.get("epsilon", 0.2)
    s.epsilon_high = cfg.get("epsilon_high", s.epsilon_low)
    s.importance_sampling_level = "token"
    s.top_entropy_quantile = 1.0
    s.off_policy_mask_threshold = None
    s.use_vllm = False
    s.vllm_importance_sampling_correction = False
    s.aux_loss_enabled = False
    s._entropy_bonus_enabled = False
    s.max_completion_length = cfg["max_completion_length"]
    s.current_gradient_accumulation_steps = ga
    s.args = types.SimpleNamespace(delta=None, use_bias_correction_kl=True, sapo_temperature_pos=1.0,
                                   sapo_temperature_neg=1.05, steps_per_generation=ga)
    s._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    lp = torch.tensor(logprobs, requires_grad=True)
    ent = torch.tensor(entropies)
    s._get_per_token_logps_and_entropies = lambda *a, **k: (lp, ent, None)
    rows, width = len(logprobs), len(logprobs[0])
    inputs = {
        "prompt_ids": torch.ones(rows, 2, dtype=torch.long), "prompt_mask": torch.ones(rows, 2, dtype=torch.long),
        "completion_ids": torch.ones(rows, width, dtype=torch.long),
        "completion_mask": torch.tensor(mask, dtype=torch.long),
        "advantages": torch.tensor(advantages), "num_items_in_batch": torch.tensor(float(num_items)),
    }
    if old is not None:
        inputs["old_per_token_logps"] = torch.tensor(old)
    if ref is not None:
        inputs["ref_per_token_logps"] = torch.tensor(ref)
    loss = GRPOTrainer._compute_loss(s, None, inputs)
    loss.backward()
    metrics = {k: v[-1] for k, v in s._metrics["train"].items()}
    return {"config": cfg, "logprobs": logprobs, "old_logprobs": old, "ref_logprobs": ref,
            "entropies": entropies, "mask": mask, "advantages": advantages, "num_items_in_batch": num_items,
            "gradient_accumulation_steps": ga, "loss": loss.item(), "d_logprobs": lp.grad.tolist(),
            "metrics": metrics}


LP = [[-1.0, -0.5, -2.0, -0.3], [-0.7, -1.1, -0.2, -3.0], [-0.4, -0.9, -1.6, -0.8]]
OLD = [[-1.1, -0.45, -2.5, -0.3], [-0.2, -1.0, -0.2, -3.0], [-0.4, -1.3, -1.0, -0.8]]
REF = [[-0.9, -0.6, -2.1, -0.2], [-0.8, -1.3, -0.25, -2.0], [-0.5, -0.8, -1.4, -0.9]]
ENT = [[1.2, 0.8, 2.0, 0.1], [0.5, 0.6, 0.7, 0.9], [1.5, 1.4, 1.3, 1.1]]
MASK = [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]]
ADV = [0.8, -1.2, 0.35]


def main():
    reward = {
        "plain": reward_case([1.5, -0.25, 0.75, 2.0], [0.5, 0.25, 0.75, -1.0], None),
        "centred": reward_case([1.5, -0.25, 0.75, 2.0], [0.5, 0.25, 0.75, -1.0], 0.01),
        "tie": reward_case([0.3, -0.7], [0.3, -0.7], None),
    }
    comp = [[5, 6, EOS], [5, EOS], [7, 8, 9, 9], [6, EOS], [8, 8, 8, 8], [5, 5, EOS]]
    adv = {
        "group": advantages_case([1.0, 0.5, 2.0, 0.25, 0.25, 0.25], 3, "group", comp, 4),
        "batch": advantages_case([1.0, 0.5, 2.0, 0.25, 0.25, 0.25], 3, "batch", comp, 4),
        "none": advantages_case([1.0, 0.5, 2.0, 0.25, 0.25, 0.25], 3, "none", comp, 4),
        "unscorable": advantages_case([1.0, None, 2.0, 0.25, 0.75, None], 3, "group", comp, 4),
        "pairs": advantages_case([0.9, 0.1, 0.4, 0.4, -0.3, 0.6], 2, "group", comp, 4),
    }
    losses = {}
    for lt in ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo"):
        eh = 5.0 if lt == "cispo" else 0.28
        for beta in (0.0, 0.04):
            cfg = {"loss_type": lt, "beta": beta, "epsilon": 0.2, "epsilon_high": eh, "max_completion_length": 4}
            name = f"{lt}_b{beta:g}"
            losses[name + "_old"] = loss_case(cfg, LP, OLD, REF if beta else None, ENT, MASK, ADV, 2, 17)
            # num_iterations = 1: old = logprobs.detach(), every ratio exactly 1.
            losses[name + "_onpolicy"] = loss_case(cfg, LP, None, REF if beta else None, ENT, MASK, ADV, 2, 17)
    # Ties with the clip bounds: on-policy every ratio is exactly 1, and with
    # ε = 0 both bounds are 1 too, so min() splits and the number-bounds
    # clamp passes no gradient at its bound (torch 2.15).
    for lt in ("grpo", "dapo"):
        cfg = {"loss_type": lt, "beta": 0.0, "epsilon": 0.0, "epsilon_high": 0.0, "max_completion_length": 4}
        losses[f"{lt}_tie_at_clip_bounds"] = loss_case(cfg, LP, None, None, ENT, MASK, ADV, 2, 17)
    out = {
        "versions": {"trl": trl.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "reward": reward, "grpo_advantages": adv, "grpo_loss": losses,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
