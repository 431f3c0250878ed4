#!/usr/bin/env python3
"""Reference values for driftui's objective tests, computed independently of
driftui with the formulas of TRL's trainers (DPOTrainer.dpo_loss,
KTOTrainer.kto_loss, CPOTrainer.cpo_loss incl. SimPO, ORPOTrainer.odds_ratio_loss),
in plain Python floats (no torch needed).

    python3 scripts/reference/objectives.py > tests/fixtures/objectives.json
"""
import json
import math


def log_sigmoid(x):
    # log(1 / (1 + e^-x)), stable both ways
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def mean(v):
    return sum(v) / len(v)


# Fixed sequence log-probabilities (sums over completion tokens) and lengths.
PC = [-12.5, -30.25, -7.0, -41.0]    # policy chosen
PR = [-14.0, -28.5, -9.75, -40.5]    # policy rejected
RC = [-13.0, -29.0, -8.0, -40.0]     # reference chosen
RR = [-13.5, -29.5, -9.0, -41.5]     # reference rejected
LC = [5, 12, 3, 17]                  # chosen lengths (tokens)
LR = [6, 11, 4, 16]                  # rejected lengths


def dpo(beta, loss_type, eps=0.0):
    if loss_type == "ipo":
        pc = [a / l for a, l in zip(PC, LC)]
        pr = [a / l for a, l in zip(PR, LR)]
        rc = [a / l for a, l in zip(RC, LC)]
        rr = [a / l for a, l in zip(RR, LR)]
    else:
        pc, pr, rc, rr = PC, PR, RC, RR
    logits = [(a - b) - (c - d) for a, b, c, d in zip(pc, pr, rc, rr)]
    if loss_type == "sigmoid":
        losses = [-log_sigmoid(beta * x) * (1 - eps) - log_sigmoid(-beta * x) * eps for x in logits]
    elif loss_type == "hinge":
        losses = [max(0.0, 1 - beta * x) for x in logits]
    elif loss_type == "ipo":
        losses = [(x - 1 / (2 * beta)) ** 2 for x in logits]
    elif loss_type == "robust":
        losses = [(-log_sigmoid(beta * x) * (1 - eps) + log_sigmoid(-beta * x) * eps) / (1 - 2 * eps) for x in logits]
    cr = [beta * (a - c) for a, c in zip(pc, rc)]
    rj = [beta * (b - d) for b, d in zip(pr, rr)]
    return {
        "loss": mean(losses),
        "rewards/chosen": mean(cr),
        "rewards/rejected": mean(rj),
        "rewards/margins": mean([a - b for a, b in zip(cr, rj)]),
        "rewards/accuracies": mean([1.0 if a > b else 0.0 for a, b in zip(cr, rj)]),
        "logps/chosen": mean(PC),
        "logps/rejected": mean(PR),
    }


# KTO: unpaired rows; labels True = desirable. KL pairs: mismatched logps.
KP = [-12.5, -30.25, -7.0, -41.0, -20.0]
KR = [-13.0, -29.0, -8.0, -40.0, -19.0]
KL_ = [True, False, True, False, False]
KP_KL = [-20.0, -18.0, -25.0, -30.0, -22.0]
KR_KL = [-21.0, -18.5, -24.0, -31.0, -22.5]


def kto(beta, dw, uw, p_kl=KP_KL, r_kl=KR_KL):
    kl = max(0.0, mean([a - b for a, b in zip(p_kl, r_kl)]))
    losses, ch, rj, chl, rjl = [], [], [], [], []
    for p, r, lab in zip(KP, KR, KL_):
        ratio = p - r
        if lab:
            losses.append(dw * (1 - 1 / (1 + math.exp(-beta * (ratio - kl)))))
            ch.append(beta * ratio)
            chl.append(p)
        else:
            losses.append(uw * (1 - 1 / (1 + math.exp(-beta * (kl - ratio)))))
            rj.append(beta * ratio)
            rjl.append(p)
    return {
        "loss": mean(losses),
        "kl": kl,
        "rewards/chosen": mean(ch),
        "rewards/rejected": mean(rj),
        "rewards/margins": mean(ch) - mean(rj),
        "logps/chosen": mean(chl),
        "logps/rejected": mean(rjl),
    }


def simpo(beta, gamma, eps=0.0):
    c = [a / l for a, l in zip(PC, LC)]
    r = [a / l for a, l in zip(PR, LR)]
    logits = [a - b - gamma / beta for a, b in zip(c, r)]
    losses = [-log_sigmoid(beta * x) * (1 - eps) - log_sigmoid(-beta * x) * eps for x in logits]
    cr = [beta * a for a in c]
    rj = [beta * b for b in r]
    return {
        "loss": mean(losses),
        "rewards/chosen": mean(cr),
        "rewards/rejected": mean(rj),
        "rewards/margins": mean([a - b for a, b in zip(cr, rj)]),
        "rewards/accuracies": mean([1.0 if a > b else 0.0 for a, b in zip(cr, rj)]),
    }


NLL = 1.375  # mean token NLL of the chosen answers


def cpo(beta, alpha, eps=0.0):
    logits = [a - b for a, b in zip(PC, PR)]
    losses = [-log_sigmoid(beta * x) * (1 - eps) - log_sigmoid(-beta * x) * eps for x in logits]
    cr = [beta * a for a in PC]
    rj = [beta * b for b in PR]
    return {
        "loss": mean(losses) + alpha * NLL,
        "nll_loss": NLL,
        "rewards/chosen": mean(cr),
        "rewards/rejected": mean(rj),
        "rewards/margins": mean([a - b for a, b in zip(cr, rj)]),
        "rewards/accuracies": mean([1.0 if a > b else 0.0 for a, b in zip(cr, rj)]),
    }


def orpo(lam):
    c = [a / l for a, l in zip(PC, LC)]
    r = [a / l for a, l in zip(PR, LR)]
    log_odds = [(a - b) - (math.log1p(-math.exp(a)) - math.log1p(-math.exp(b))) for a, b in zip(c, r)]
    ratio = [log_sigmoid(x) for x in log_odds]
    return {
        "loss": NLL - lam * mean(ratio),
        "nll_loss": NLL,
        "log_odds_ratio": mean(ratio),
        "log_odds_chosen": mean(log_odds),
        "rewards/chosen": mean([lam * a for a in c]),
        "rewards/rejected": mean([lam * b for b in r]),
    }


out = {
    "inputs": {
        "policy_chosen": PC, "policy_rejected": PR, "reference_chosen": RC, "reference_rejected": RR,
        "chosen_len": LC, "rejected_len": LR,
        "kto_policy": KP, "kto_reference": KR, "kto_labels": KL_, "kto_policy_kl": KP_KL, "kto_reference_kl": KR_KL,
        "chosen_nll": NLL,
    },
    "dpo_sigmoid_b0.1": dpo(0.1, "sigmoid"),
    "dpo_sigmoid_b0.5_ls0.2": dpo(0.5, "sigmoid", 0.2),
    "dpo_hinge_b0.1": dpo(0.1, "hinge"),
    "dpo_ipo_b0.1": dpo(0.1, "ipo"),
    "dpo_robust_b0.1_ls0.1": dpo(0.1, "robust", 0.1),
    "kto_b0.1": kto(0.1, 1.0, 1.0),
    "kto_b0.5_w1.33_0.75": kto(0.5, 1.33, 0.75),
    # A KL estimate below zero is clamped to 0.
    "kto_b0.1_negative_kl": kto(0.1, 1.0, 1.0, p_kl=[-25.0] * 5, r_kl=[-20.0] * 5),
    "simpo_b2_g0.5": simpo(2.0, 0.5),
    "cpo_b0.1_a1": cpo(0.1, 1.0),
    "orpo_l0.1": orpo(0.1),
    "dpo_policy_equals_reference": {"loss": math.log(2.0)},
}
print(json.dumps(out, indent=1, sort_keys=True))
