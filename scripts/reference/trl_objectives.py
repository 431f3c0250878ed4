#!/usr/bin/env python3
"""TRL 1.16's own loss code on fixed sequence log-probabilities, with gradients.

Independent reference for driftui's objectives: every number here comes out of
the installed TRL (pinned in requirements-trl.txt), not out of a re-typed
formula. TRL 1.16 has no stand-alone `dpo_loss`/`kto_loss` any more: the DPO
and KTO losses live inline in `DPOTrainer._compute_loss` and
`KTOTrainer._compute_loss`. So those methods are called, unbound, on a
stand-in `self` made with `object.__new__(Trainer)` (the real class, no
`__init__`) and a fake model whose "fused LM head" returns per-token
log-probabilities built from the inputs below. CPO (incl. SimPO) and ORPO
still have `cpo_loss` / `odds_ratio_loss`; their whole
`get_batch_loss_metrics` is run with `concatenated_forward` replaced by one
that hands back the inputs (lengths averaged by TRL's own `get_batch_logps`).

Everything runs in float64 with torch autograd, except where TRL itself casts
(ORPO's `odds_ratio_loss` calls `.float()`, so its loss is float32 math).

    /root/trlref/bin/python scripts/reference/trl_objectives.py > tests/fixtures/trl/objectives.json

JSON layout (keys sorted):

  "versions":  {"trl", "torch", "transformers", "python"}
  "inputs":    named input sets; each holds the lists it uses:
               policy_chosen, policy_rejected, reference_chosen, reference_rejected
               (summed completion log-probs), chosen_len, rejected_len (completion
               tokens), chosen_nll (CPO/ORPO's NLL term, a given number here), and
               for KTO: policy, reference, labels (true = desirable), policy_kl,
               reference_kl (the mismatched-pair log-probs), len.
  "cases":     {name: case}, one per (trainer, loss type, hyper-parameters, input set):
     "trainer", "loss_type", "config" (the TRL config keys set), "inputs" (input set name),
     "code"        the TRL function that computed it (module:qualname),
     "loss"        the mean loss TRL returns for the whole batch,
     "per_row"     {"loss": [...], "rewards/chosen": [...], "rewards/rejected": [...]}:
                   TRL run on one row at a time (KTO: one row, with the whole batch's
                   KL rows, so the KL term is the batch's); a KTO row's loss includes
                   its desirable/undesirable weight; rewards of the other side are null,
     "metrics"     every metric TRL logs for the batch (the value its `log` would show
                   for one micro-batch); logits/* and entropy/mean_token_accuracy are
                   meaningless here (the fake model's logits are 0) and left out,
     "grad"        d loss / d input for every input list of the set, same order
                   (0.0 where TRL detaches the input, e.g. KTO's KL log-probs),
     "notes"       what to look at.
"""
import json
import math
import platform
import sys
import types
import warnings
from collections import defaultdict

import torch

warnings.filterwarnings("ignore")

import transformers  # noqa: E402
import trl  # noqa: E402
from trl.experimental.cpo import cpo_trainer as cpo_mod  # noqa: E402
from trl.experimental.cpo.cpo_trainer import CPOTrainer  # noqa: E402
from trl.experimental.orpo import orpo_trainer as orpo_mod  # noqa: E402
from trl.experimental.orpo.orpo_trainer import ORPOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DPOTrainer  # noqa: E402
from trl.trainer.kto_trainer import KTOTrainer  # noqa: E402

torch.set_default_dtype(torch.float64)
F64 = torch.float64

# --- Inputs (the "main" set is scripts/reference/objectives.py's) -------------------
PC = [-12.5, -30.25, -7.0, -41.0]    # policy chosen, summed over completion tokens
PR = [-14.0, -28.5, -9.75, -40.5]    # policy rejected
RC = [-13.0, -29.0, -8.0, -40.0]     # reference chosen
RR = [-13.5, -29.5, -9.0, -41.5]     # reference rejected
LC = [5, 12, 3, 17]                  # chosen completion lengths (tokens)
LR = [6, 11, 4, 16]                  # rejected completion lengths
NLL = 1.375                          # CPO/ORPO's NLL term (mean token NLL)

KP = [-12.5, -30.25, -7.0, -41.0, -20.0]
KR = [-13.0, -29.0, -8.0, -40.0, -19.0]
KLAB = [True, False, True, False, False]
KP_KL = [-20.0, -18.0, -25.0, -30.0, -22.0]
KR_KL = [-21.0, -18.5, -24.0, -31.0, -22.5]
KLEN = [5, 12, 3, 17, 8]

INPUTS = {
    "main": dict(policy_chosen=PC, policy_rejected=PR, reference_chosen=RC, reference_rejected=RR,
                 chosen_len=LC, rejected_len=LR, chosen_nll=NLL),
    # Policy equals reference exactly: every DPO logit is 0.0, the point where
    # driftui's log_sigmoid had gradient 1 instead of 0.5.
    "zero": dict(policy_chosen=PC, policy_rejected=PR, reference_chosen=PC, reference_rejected=PR,
                 chosen_len=LC, rejected_len=LR, chosen_nll=NLL),
    # beta * logit = 1 exactly for beta = 0.5 (logit 2.0): the hinge's kink, where
    # torch.relu has gradient 0.
    "kink": dict(policy_chosen=[-10.0, -20.0], policy_rejected=[-12.0, -21.0],
                 reference_chosen=[-11.0, -20.5], reference_rejected=[-11.0, -19.5],
                 chosen_len=[4, 6], rejected_len=[5, 6], chosen_nll=NLL),
    # Chosen equals rejected (same sums, same lengths): every reference-free
    # logit (CPO, SimPO with gamma 0, ORPO's log-odds) is 0.0.
    "tie": dict(policy_chosen=PC, policy_rejected=PC, reference_chosen=PC, reference_rejected=PC,
                chosen_len=LC, rejected_len=LC, chosen_nll=NLL),
    "kto_main": dict(policy=KP, reference=KR, labels=KLAB, policy_kl=KP_KL, reference_kl=KR_KL, len=KLEN),
    # Policy equals reference on every sequence: KL 0, every logit 0.
    "kto_zero": dict(policy=KP, reference=KP, labels=KLAB, policy_kl=KP_KL, reference_kl=KP_KL, len=KLEN),
    # A KL estimate below zero (mean policy-reference over the KL rows = -5) is clamped to 0.
    "kto_negative_kl": dict(policy=KP, reference=KR, labels=KLAB, policy_kl=[-25.0] * 5,
                            reference_kl=[-20.0] * 5, len=KLEN),
}


def leaf(values):
    return torch.tensor(values, dtype=F64, requires_grad=True)


def gathers():
    """Single-process accelerator: gathers are the identity."""
    return types.SimpleNamespace(
        device=torch.device("cpu"),
        gather=lambda x: x,
        gather_for_metrics=lambda x: x,
    )


def per_token(seq_logps, lengths, width):
    """[rows, width] per-token log-probs whose row sums are exactly `seq_logps`:
    the whole sum on the first completion token, exact zeros on the others (as the
    fused head returns zeros off the labels)."""
    rows = seq_logps.shape[0]
    onehot = torch.zeros(rows, width, dtype=F64)
    onehot[:, 0] = 1.0
    assert all(1 <= n <= width for n in lengths)
    return onehot * seq_logps.unsqueeze(1)


def completion_mask(lengths, width):
    """Unshifted [rows, width + 1] mask: one prompt token, then `n` completion tokens."""
    m = torch.zeros(len(lengths), width + 1, dtype=torch.long)
    for i, n in enumerate(lengths):
        m[i, 1:1 + n] = 1
    return m


class FakeFusedModel:
    """Stands for a model patched by `add_fused_lm_head`: called with
    `fused_lm_head=True`, returns the per-token fields. Which tensor it returns
    is keyed by the first input id (0: main batch, 1: KTO's KL batch)."""

    def __init__(self, by_key):
        self.by_key = by_key
        self.training = True

    def __call__(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, **_):
        assert fused_lm_head
        lp = self.by_key[int(input_ids[0, 0])]
        zeros = torch.zeros_like(lp)
        return types.SimpleNamespace(log_probs=lp, entropy=zeros.detach(), mean_logits=zeros.detach(),
                                     is_top1=torch.zeros(lp.shape, dtype=torch.bool), aux_loss=None)


def clean(metrics):
    drop = ("logits/", "entropy", "mean_token_accuracy", "num_tokens")
    return {k: v for k, v in metrics.items() if not k.startswith(drop)}


def flat_metrics(store):
    return {k: (sum(v) / len(v)) for k, v in store.items()}


# --- DPO ---------------------------------------------------------------------------
def dpo_self(beta, loss_type, label_smoothing):
    s = object.__new__(DPOTrainer)
    s.model = types.SimpleNamespace(training=True)
    s.accelerator = gathers()
    s.args = types.SimpleNamespace(discopop_tau=0.05, gradient_checkpointing_kwargs=None)
    s.beta = beta
    s.loss_types = [loss_type]
    s.loss_weights = [1.0]
    s.label_smoothing = label_smoothing
    s.ld_alpha = None
    s.f_divergence_type = "reverse_kl"
    s.f_alpha_divergence_coef = 0.5
    s.use_weighting = False
    s.aux_loss_enabled = False
    # Reference log-probs come in the batch, as with precompute_ref_log_probs=True,
    # so they can be leaves with a gradient.
    s.precompute_ref_logps = True
    s.ref_model = None
    s._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    s._total_train_tokens = 0
    s._tp_size = 1
    return s


def dpo_run(beta, loss_type, ls, inp, rows=None):
    idx = list(range(len(inp["policy_chosen"]))) if rows is None else rows
    pick = lambda k: [inp[k][i] for i in idx]  # noqa: E731
    pc, pr, rc, rr = (leaf(pick(k)) for k in ("policy_chosen", "policy_rejected",
                                               "reference_chosen", "reference_rejected"))
    lc, lr = pick("chosen_len"), pick("rejected_len")
    width = max(lc + lr)
    lp = torch.cat([per_token(pc, lc, width), per_token(pr, lr, width)])
    cmask = completion_mask(lc + lr, width)
    inputs = {
        "input_ids": torch.zeros_like(cmask),
        "attention_mask": torch.ones_like(cmask),
        "completion_mask": cmask,
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
    s = dpo_self(beta, loss_type, ls)
    loss = DPOTrainer._compute_loss(s, FakeFusedModel({0: lp}), inputs, False)
    loss.backward()
    grads = {"policy_chosen": pc.grad, "policy_rejected": pr.grad,
             "reference_chosen": rc.grad, "reference_rejected": rr.grad}
    return loss.item(), flat_metrics(s._metrics["train"]), grads


def dpo_case(loss_type, beta, ls, inp_name, notes):
    inp = INPUTS[inp_name]
    loss, metrics, grads = dpo_run(beta, loss_type, ls, inp)
    rows = [dpo_run(beta, loss_type, ls, inp, [i]) for i in range(len(inp["policy_chosen"]))]
    return {
        "trainer": "DPOTrainer", "loss_type": loss_type, "inputs": inp_name,
        "config": {"beta": beta, "label_smoothing": ls, "loss_type": [loss_type]},
        "code": "trl.trainer.dpo_trainer:DPOTrainer._compute_loss",
        "loss": loss,
        "per_row": {"loss": [r[0] for r in rows],
                    "rewards/chosen": [r[1]["rewards/chosen"] for r in rows],
                    "rewards/rejected": [r[1]["rewards/rejected"] for r in rows]},
        "metrics": clean(metrics),
        "grad": {k: v.tolist() for k, v in grads.items()},
        "notes": notes,
    }


# --- KTO ---------------------------------------------------------------------------
def kto_self(beta, dw, uw):
    s = object.__new__(KTOTrainer)
    s.model = types.SimpleNamespace(training=True)
    s.accelerator = gathers()
    s.args = types.SimpleNamespace(gradient_checkpointing_kwargs=None)
    s.beta = beta
    s.loss_type = "kto"
    s.desirable_weight = dw
    s.undesirable_weight = uw
    s.calculate_KL = True
    s.precompute_ref_logps = True
    s.ref_model = None
    s.aux_loss_enabled = False
    s._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    s._total_train_tokens = 0
    s._tp_size = 1
    return s


def kto_run(beta, dw, uw, inp, rows=None):
    n = len(inp["policy"])
    idx = list(range(n)) if rows is None else rows
    p = leaf([inp["policy"][i] for i in idx])
    r = leaf([inp["reference"][i] for i in idx])
    # The KL rows are always the whole batch's: the per-row runs keep the batch's KL term.
    pkl = leaf(inp["policy_kl"])
    rkl = leaf(inp["reference_kl"])
    lens = [inp["len"][i] for i in idx]
    width = max(inp["len"])
    cmask = completion_mask(lens, width)
    kl_cmask = completion_mask(inp["len"], width)
    batch = {
        "input_ids": torch.zeros_like(cmask),
        "attention_mask": torch.ones_like(cmask),
        "completion_mask": cmask,
        "KL_input_ids": torch.ones_like(kl_cmask),
        "KL_attention_mask": torch.ones_like(kl_cmask),
        "KL_completion_mask": kl_cmask,
        "label": torch.tensor([inp["labels"][i] for i in idx]),
        "ref_logps": r,
        "ref_KL_logps": rkl,
    }
    model = FakeFusedModel({0: per_token(p, lens, width), 1: per_token(pkl, inp["len"], width)})
    s = kto_self(beta, dw, uw)
    loss = KTOTrainer._compute_loss(s, model, batch, False)
    loss.backward()
    z = lambda t: t.grad if t.grad is not None else torch.zeros_like(t)  # noqa: E731
    grads = {"policy": z(p), "reference": z(r), "policy_kl": z(pkl), "reference_kl": z(rkl)}
    return loss.item(), flat_metrics(s._metrics["train"]), grads


def kto_case(beta, dw, uw, inp_name, notes):
    inp = INPUTS[inp_name]
    loss, metrics, grads = kto_run(beta, dw, uw, inp)
    rows = [kto_run(beta, dw, uw, inp, [i]) for i in range(len(inp["policy"]))]
    return {
        "trainer": "KTOTrainer", "loss_type": "kto", "inputs": inp_name,
        "config": {"beta": beta, "desirable_weight": dw, "undesirable_weight": uw, "loss_type": "kto"},
        "code": "trl.trainer.kto_trainer:KTOTrainer._compute_loss",
        "loss": loss,
        "per_row": {"loss": [x[0] for x in rows],
                    "rewards/chosen": [x[1].get("rewards/chosen") for x in rows],
                    "rewards/rejected": [x[1].get("rewards/rejected") for x in rows]},
        "metrics": clean(metrics),
        "grad": {k: v.tolist() for k, v in grads.items()},
        "notes": notes,
    }


# --- CPO / SimPO / ORPO --------------------------------------------------------------
def patched_batch_logps(trainer_cls, module, per_tok, labels, average):
    """TRL's own `get_batch_logps` (sum or mean over labels != -100 after the shift),
    with `selective_log_softmax` answering the given per-token log-probs."""
    original = module.selective_log_softmax
    module.selective_log_softmax = lambda logits, index: per_tok
    try:
        dummy_logits = torch.zeros(labels.shape + (1,), dtype=F64)
        return trainer_cls.get_batch_logps(dummy_logits, labels, average_log_prob=average)
    finally:
        module.selective_log_softmax = original


def labels_for(lengths, width):
    lab = torch.full((len(lengths), width + 1), -100, dtype=torch.long)
    for i, n in enumerate(lengths):
        lab[i, 1:1 + n] = 7
    return lab


def ref_free_run(trainer_cls, module, cfg, inp, rows=None):
    idx = list(range(len(inp["policy_chosen"]))) if rows is None else rows
    pc = leaf([inp["policy_chosen"][i] for i in idx])
    pr = leaf([inp["policy_rejected"][i] for i in idx])
    nll = torch.tensor(inp["chosen_nll"], dtype=F64, requires_grad=True)
    lc = [inp["chosen_len"][i] for i in idx]
    lr = [inp["rejected_len"][i] for i in idx]
    width = max(lc + lr)
    per_tok = torch.cat([per_token(pc, lc, width), per_token(pr, lr, width)])
    labels = labels_for(lc + lr, width)
    average = cfg["loss_type"] in ("ipo", "simpo") if trainer_cls is CPOTrainer else True

    s = object.__new__(trainer_cls)
    s.accelerator = gathers()
    s.beta = cfg["beta"]
    s.aux_loss_enabled = False
    s.is_encoder_decoder = False
    if trainer_cls is CPOTrainer:
        s.loss_type = cfg["loss_type"]
        s.label_smoothing = cfg.get("label_smoothing", 0.0)
        s.cpo_alpha = cfg.get("cpo_alpha", 1.0)
        s.simpo_gamma = cfg.get("simpo_gamma", 0.5)
        s.alpha = 0.0

    def concatenated_forward(model, batch):
        logps = patched_batch_logps(trainer_cls, module, per_tok, labels, average)
        b = len(idx)
        zl = torch.zeros(b, width + 1, 1, dtype=F64)
        # CPO: nll_loss is a constant 0 when cpo_alpha == 0 (cpo_trainer.py:842-843)
        n = nll if (trainer_cls is ORPOTrainer or s.cpo_alpha != 0) else torch.tensor(0.0, dtype=F64)
        return (logps[:b], logps[b:], zl, zl, n)

    s.concatenated_forward = concatenated_forward
    loss, metrics = trainer_cls.get_batch_loss_metrics(s, None, {}, train_eval="train")
    loss.backward()
    z = lambda t: t.grad if t.grad is not None else torch.zeros_like(t)  # noqa: E731
    grads = {"policy_chosen": z(pc), "policy_rejected": z(pr), "chosen_nll": z(nll).item()}
    return loss.item(), metrics, grads


def ref_free_case(trainer_cls, module, cfg, inp_name, notes):
    inp = INPUTS[inp_name]
    loss, metrics, grads = ref_free_run(trainer_cls, module, cfg, inp)
    rows = [ref_free_run(trainer_cls, module, cfg, inp, [i]) for i in range(len(inp["policy_chosen"]))]
    name = trainer_cls.__name__
    code = ("trl.experimental.cpo.cpo_trainer:CPOTrainer.get_batch_loss_metrics (cpo_loss)"
            if trainer_cls is CPOTrainer else
            "trl.experimental.orpo.orpo_trainer:ORPOTrainer.get_batch_loss_metrics (odds_ratio_loss)")
    return {
        "trainer": name, "loss_type": cfg.get("loss_type", "orpo"), "inputs": inp_name,
        "config": cfg, "code": code,
        "loss": loss,
        "per_row": {"loss": [x[0] for x in rows],
                    "rewards/chosen": [x[1]["rewards/chosen"] for x in rows],
                    "rewards/rejected": [x[1]["rewards/rejected"] for x in rows]},
        "metrics": clean(metrics),
        "grad": {k: (v.tolist() if torch.is_tensor(v) else v) for k, v in grads.items()},
        "notes": notes,
    }


def main():
    cases = {}
    for inp in ("main", "zero"):
        cases[f"dpo_sigmoid_b0.1_{inp}"] = dpo_case("sigmoid", 0.1, 0.0, inp, "plain DPO")
        cases[f"dpo_sigmoid_b0.5_ls0.2_{inp}"] = dpo_case(
            "sigmoid", 0.5, 0.2, inp,
            "label_smoothing has no effect on 'sigmoid' in TRL 1.16 (dpo_trainer.py:1387-1388): "
            "equal to sigmoid with beta 0.5, ls 0")
        cases[f"dpo_sigmoid_b0.5_{inp}"] = dpo_case("sigmoid", 0.5, 0.0, inp, "compare with the ls0.2 case")
        cases[f"dpo_hinge_b0.1_{inp}"] = dpo_case("hinge", 0.1, 0.0, inp, "relu(1 - beta*logit)")
        cases[f"dpo_ipo_b0.1_{inp}"] = dpo_case(
            "ipo", 0.1, 0.0, inp,
            "loss on length-averaged log-ratios; rewards stay beta * SUMMED log-ratio (dpo_trainer.py:1582)")
        cases[f"dpo_robust_b0.1_ls0.1_{inp}"] = dpo_case("robust", 0.1, 0.1, inp, "robust DPO, eps 0.1")
    cases["dpo_hinge_b0.5_kink"] = dpo_case(
        "hinge", 0.5, 0.0, "kink", "1 - beta*logit = 0 exactly: torch.relu's gradient there is 0")

    for inp in ("kto_main", "kto_zero", "kto_negative_kl"):
        sfx = inp[4:]
        cases[f"kto_b0.1_{sfx}"] = kto_case(0.1, 1.0, 1.0, inp, "KL detached; loss = mean over all rows")
    cases["kto_b0.5_w1.33_0.75_main"] = kto_case(0.5, 1.33, 0.75, "kto_main",
                                                 "weights multiply each row's loss; still a plain mean over rows")

    for inp in ("main", "tie"):
        for cfg, note in [
            ({"loss_type": "sigmoid", "beta": 0.1, "cpo_alpha": 1.0}, "CPO: sigmoid on summed log-probs + alpha*NLL"),
            ({"loss_type": "sigmoid", "beta": 0.1, "cpo_alpha": 1.0, "label_smoothing": 0.1},
             "CPO sigmoid with label smoothing (cDPO form, cpo_trainer.py:723-728)"),
            ({"loss_type": "sigmoid", "beta": 0.1, "cpo_alpha": 0.0}, "no NLL term"),
            ({"loss_type": "hinge", "beta": 0.1, "cpo_alpha": 1.0}, "hinge on summed log-probs"),
            ({"loss_type": "ipo", "beta": 0.1, "cpo_alpha": 1.0}, "IPO on averaged log-probs, no reference"),
            ({"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.0},
             "SimPO as in the paper (no NLL): CPO loss_type simpo with cpo_alpha 0"),
            ({"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 1.0},
             "TRL's default cpo_alpha 1.0 adds the NLL to SimPO too"),
            ({"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.0, "label_smoothing": 0.1},
             "SimPO with label smoothing"),
            ({"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.0, "cpo_alpha": 0.0},
             "gamma 0: at the 'tie' inputs every SimPO logit is exactly 0"),
        ]:
            parts = ([] if cfg["loss_type"] == "simpo" else [cfg["loss_type"]]) + [f"b{cfg['beta']:g}"]
            if "simpo_gamma" in cfg:
                parts.append(f"g{cfg['simpo_gamma']:g}")
            parts.append(f"a{cfg['cpo_alpha']:g}")
            if cfg.get("label_smoothing"):
                parts.append(f"ls{cfg['label_smoothing']:g}")
            name = ("simpo" if cfg["loss_type"] == "simpo" else "cpo") + "_" + "_".join(parts) + f"_{inp}"
            cases[name] = ref_free_case(CPOTrainer, cpo_mod, cfg, inp, note)
        for beta in (0.1, 0.5):
            cases[f"orpo_b{beta:g}_{inp}"] = ref_free_case(
                ORPOTrainer, orpo_mod, {"beta": beta}, inp,
                "loss = NLL - mean(beta * logsigmoid(log_odds)) on averaged log-probs; float32 math "
                "(orpo_trainer.py:691-692)")

    out = {
        "versions": {"trl": trl.__version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "inputs": INPUTS,
        "cases": cases,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True, allow_nan=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
