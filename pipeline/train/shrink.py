"""Model shrinking: global magnitude pruning (with optional recovery) and knowledge distillation into a shallower
student initialised from the teacher's layers. Both train with the same seeded, length-bucketed batches as LoRA."""

from __future__ import annotations

import copy
import math
import re
import sys
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.errors import ConfigError
from pipeline.train import model as M


def encoder_linears(model) -> list[tuple[torch.nn.Module, str]]:
    enc = model.base_model.encoder
    return [(m, "weight") for _, m in enc.named_modules() if isinstance(m, torch.nn.Linear)]


def sparsity(model) -> tuple[int, int]:
    """(zero weights, total weights) over the encoder's Linear layers."""
    zeros = total = 0
    for m, _ in encoder_linears(model):
        zeros += int((m.weight == 0).sum())
        total += m.weight.numel()
    return zeros, total


def student_layer_map(n_teacher: int, k: int) -> list[int]:
    """Teacher layers that initialise a k-layer student: evenly spaced, top-aligned (6 -> 3: layers 1, 3, 5)."""
    if not 1 <= k < n_teacher:
        raise ConfigError(f"compress.student_layers: {k} must be between 1 and {n_teacher - 1} (teacher has "
                          f"{n_teacher} layers)")
    return [round((i + 1) * n_teacher / k) - 1 for i in range(k)]


def make_student(teacher, k: int):
    """A k-layer copy of the teacher's architecture; embeddings, pooler and head copied, layer i <- teacher layer
    map[i]."""
    n = teacher.config.num_hidden_layers
    layer_map = student_layer_map(n, k)
    cfg = copy.deepcopy(teacher.config)
    cfg.num_hidden_layers = k
    student = M.classifier_from_config(cfg)  # same head (pooling) as the teacher
    pat = re.compile(r"^(.*\.encoder\.layer\.)(\d+)(\..*)$")
    state = {}
    for key, v in teacher.state_dict().items():
        m = pat.match(key)
        if m is None:
            state[key] = v
        elif int(m.group(2)) in layer_map:
            state[f"{m.group(1)}{layer_map.index(int(m.group(2)))}{m.group(3)}"] = v
    missing, unexpected = student.load_state_dict(state, strict=False)
    if [k_ for k_ in missing if "position_ids" not in k_] or unexpected:
        raise ConfigError(f"compress: cannot initialise the student from the teacher (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    return student, layer_map


@torch.inference_mode()
def teacher_logits(teacher, ids: list[list[int]], pad_id: int, batch_size: int) -> torch.Tensor:
    teacher.eval()
    out = torch.zeros(len(ids), teacher.config.num_labels)
    for b in M.eval_batches([len(x) for x in ids], batch_size):
        out[b] = teacher(**M.collate([ids[i] for i in b], pad_id)).logits.float()
    return out


def distill(student, t_logits: torch.Tensor, ids: list[list[int]], labels: np.ndarray, pad_id: int, *,
            lr: float, batch_size: int, seed: int, epochs: int = 1, max_steps: Optional[int] = None,
            temperature: float = 2.0, alpha: float = 0.5, desc: str = "distill") -> dict[str, float]:
    """Train `student` on alpha * T^2 * KL(teacher || student at temperature T) + (1 - alpha) * CE(labels).
    Word embeddings stay frozen (the bulk of the parameters, little to gain on a small set). Stops after `epochs`
    or `max_steps` optimizer steps, whichever comes first."""
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    emb = student.base_model.embeddings.word_embeddings
    emb.weight.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps_per_epoch = math.ceil(len(ids) / batch_size)
    total = steps_per_epoch * epochs if max_steps is None else max_steps
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * total), total)
    lengths = [len(x) for x in ids]
    y_all = torch.as_tensor(labels, dtype=torch.long)
    student.train()
    step, running, seen, epoch = 0, 0.0, 0, 0
    bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, disable=None, leave=False, mininterval=2.0)
    while step < total:
        epoch += 1
        for b in M.train_batches(lengths, batch_size, seed, 10_000 + epoch):
            if step >= total:
                break
            logits = student(**M.collate([ids[i] for i in b], pad_id)).logits.float()
            t = t_logits[b]
            kl = F.kl_div(F.log_softmax(logits / temperature, -1), F.softmax(t / temperature, -1),
                          reduction="batchmean") * temperature**2
            ce = F.cross_entropy(logits, y_all[b])
            loss = alpha * kl + (1 - alpha) * ce
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            running += float(loss.detach()) * len(b)
            seen += len(b)
            bar.update(1)
    bar.close()
    emb.weight.requires_grad_(True)
    student.eval()
    return {"steps": step, "loss": running / max(seen, 1)}


def prune_global(model, amount: float, recover: Optional[dict] = None):
    """Copy of `model` with the smallest-magnitude `amount` of encoder Linear weights (global L1) set to zero,
    optionally fine-tuned for a few steps with the masks in place (`recover` = kwargs of `distill`), then made
    permanent. Dense storage: the zeros take as much space as any weight."""
    import torch.nn.utils.prune as prune

    pruned = copy.deepcopy(model)
    targets = encoder_linears(pruned)
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    info: dict[str, float] = {}
    if recover:
        info = distill(pruned, **recover)
    for m, name in targets:
        prune.remove(m, name)
    pruned.eval()
    return pruned, info
