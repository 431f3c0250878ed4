"""Write driftui's event log from a transformers / TRL trainer, live.

A trainer's own `trainer_state.json` appears only when it saves a checkpoint;
this callback writes driftui's `events.jsonl` as the run goes, so that
`driftui watch OUTPUT_DIR` draws loss, rewards and learning rate at every
logging step and `driftui trace OUTPUT_DIR` knows the run's plan:

    from driftui_callback import DriftuiCallback
    trainer = DPOTrainer(...)
    trainer.add_callback(DriftuiCallback())          # OUTPUT_DIR/events.jsonl
    trainer.train()

It needs nothing but transformers (and the standard library). Only the main
process (rank 0) writes under distributed training. Records, as driftui
reads them (schema 1, `src/events/mod.rs`):

- `run_start` once training begins: the run's name, seed, model, the one
  phase (its algorithm from the config class: `DPOConfig` -> `dpo`), the
  planned steps, library versions, and the trainer's whole configuration
  (`TrainingArguments.to_dict()`) under `config`;
- `phase_start`;
- one `step` per `on_log` that carries a training loss: `loss`, `lr` (the
  logged `learning_rate`), `grad_norm`, `tokens` (this step's share of TRL's
  cumulative `num_tokens`, when it logs it), `seconds` (wall time since the
  previous logged step, divided over the steps in between), and every other
  number the trainer logged under its own name (`rewards/margins`, `epoch`,
  ...); evaluation logs and the final summary are not steps and are left out;
- one `snapshot` per `on_save`: the checkpoint directory, relative to the log;
- `phase_end` and `run_end` when training ends.

Every line is written whole and flushed, so a reader never sees half a record
except after a crash (driftui skips a torn last line).
"""

import json
import math
import os
import time

from transformers import TrainerCallback

SCHEMA = 1

# Config classes whose name says the algorithm (TRL's trainers).
_ALGORITHMS = {
    "SFTConfig": "sft",
    "DPOConfig": "dpo",
    "KTOConfig": "kto",
    "CPOConfig": "cpo",
    "ORPOConfig": "orpo",
    "RewardConfig": "reward",
    "PPOConfig": "ppo",
    "GRPOConfig": "grpo",
    "RLOOConfig": "rloo",
}

# Fields of a transformers log entry that are not metrics.
_NOT_METRICS = {"loss", "learning_rate", "grad_norm", "step", "total_flos"}


def _algorithm(args):
    name = _ALGORITHMS.get(type(args).__name__, "")
    # TRL runs SimPO as CPO with loss_type "simpo".
    if name == "cpo" and getattr(args, "loss_type", None) == "simpo":
        return "simpo"
    return name


def _number(v):
    """A finite float, None for NaN/inf (JSON has neither), or no number."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    return None


def _versions():
    out = {}
    for mod in ("transformers", "trl", "torch", "peft", "accelerate"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # a library that is not installed is not a version
            pass
    return out


class DriftuiCallback(TrainerCallback):
    """Append driftui events for this run to `path` (default OUTPUT_DIR/events.jsonl).

    `phase`: the phase's name (default: the algorithm, else "train");
    `algorithm`: overrides the one read from the config class.
    """

    def __init__(self, path=None, phase=None, algorithm=None):
        self.path = path
        self.phase = phase
        self.algorithm = algorithm
        self._file = None
        self._start = 0.0
        self._last_t = 0.0
        self._last_step = 0
        self._last_tokens = None
        self._dir = "."

    # -- writing -----------------------------------------------------------
    def _write(self, record):
        if self._file is None:
            return
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()

    def _open(self, args):
        path = self.path or os.path.join(args.output_dir, "events.jsonl")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._dir = os.path.dirname(os.path.abspath(path))
        # A torn last line from a crash would glue onto our first record.
        needs_newline = False
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                needs_newline = f.read(1) != b"\n"
        self._file = open(path, "a", encoding="utf-8")
        if needs_newline:
            self._file.write("\n")

    # -- trainer events ----------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero:
            return
        self._open(args)
        now = time.time()
        self._start = self._last_t = now
        self._last_step = state.global_step
        algorithm = self.algorithm if self.algorithm is not None else _algorithm(args)
        phase = self.phase or algorithm or "train"
        cfg = getattr(model, "config", None)
        params = trainable = 0
        dtype = ""
        device = ""
        if model is not None:
            for p in model.parameters():
                params += p.numel()
                if p.requires_grad:
                    trainable += p.numel()
                dtype = dtype or str(p.dtype).replace("torch.", "")
                device = device or str(p.device)
        try:
            config = json.loads(args.to_json_string())
        except Exception:  # a config that does not serialise is left out, not fatal
            config = None
        record = {
            "kind": "run_start",
            "schema": SCHEMA,
            "t": now,
            "run": args.run_name or os.path.basename(os.path.normpath(args.output_dir)),
            "seed": int(args.seed),
            "recipe": "",
            "model": {
                "source": getattr(cfg, "_name_or_path", "") or "",
                "architecture": getattr(cfg, "model_type", "") or "",
                "parameters": params,
                "trainable": trainable,
                "dtype": dtype,
                "device": device,
            },
            "phases": [{"name": phase, "algorithm": algorithm, "steps": int(state.max_steps)}],
            "versions": _versions(),
        }
        if config is not None:
            record["config"] = config
        self._write(record)
        self._write(
            {
                "kind": "phase_start",
                "t": now,
                "phase": 0,
                "name": phase,
                "algorithm": algorithm,
                "steps": int(state.max_steps),
                "global_step": int(state.global_step),
            }
        )

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._file is None or not logs or "loss" not in logs:
            return
        now = time.time()
        step = int(state.global_step)
        steps = max(step - self._last_step, 1)
        tokens = 0
        cumulative = _number(logs.get("num_tokens"))
        if cumulative is not None:
            if self._last_tokens is not None:
                tokens = max(int(cumulative - self._last_tokens), 0)
            else:
                tokens = int(cumulative)
            self._last_tokens = cumulative
        record = {
            "kind": "step",
            "t": now,
            "phase": 0,
            "step": step,
            "global_step": step,
            "loss": _number(logs.get("loss")),
            "lr": _number(logs.get("learning_rate")) or 0.0,
            "grad_norm": _number(logs.get("grad_norm")),
            "tokens": tokens,
            "seconds": (now - self._last_t) / steps,
        }
        for k, v in logs.items():
            if k in _NOT_METRICS or k in record:
                continue
            f = _number(v)
            if f is not None:
                record[k] = f
        self._last_t = now
        self._last_step = step
        self._write(record)

    def on_save(self, args, state, control, **kwargs):
        if self._file is None:
            return
        step = int(state.global_step)
        ckpt = os.path.join(args.output_dir, f"checkpoint-{step}")
        self._write(
            {
                "kind": "snapshot",
                "t": time.time(),
                "phase": 0,
                "step": step,
                "global_step": step,
                "path": os.path.relpath(os.path.abspath(ckpt), self._dir),
                "reason": "cadence",
            }
        )

    def on_train_end(self, args, state, control, **kwargs):
        if self._file is None:
            return
        now = time.time()
        step = int(state.global_step)
        self._write(
            {
                "kind": "phase_end",
                "t": now,
                "phase": 0,
                "steps": step,
                "global_step": step,
                "seconds": now - self._start,
            }
        )
        done = state.max_steps <= 0 or step >= state.max_steps
        self._write(
            {
                "kind": "run_end",
                "t": now,
                "status": "completed" if done else "stopped",
                "global_step": step,
                "seconds": now - self._start,
            }
        )
        self._file.close()
        self._file = None
