"""Sentence embeddings for the quality stage's third view: the attention-masked mean of a small encoder's last hidden
states (how all-MiniLM-L6-v2 was trained), L2-normalised. The encoder is `quality.embedding_model` (`bundled` = the
packaged all-MiniLM-L6-v2; a local Hugging Face folder or a cached hub id also works). Offline: nothing is fetched."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=2)
def _encoder(name: str):
    from transformers import AutoModel

    from pipeline.errors import ConfigError
    from pipeline.train.model import load_tokenizer, quiet_transformers, resolve_base_model

    try:
        path = resolve_base_model(name)
        tok = load_tokenizer(path)
    except ConfigError as exc:  # same resolution as train.base_model; name the key the user set
        raise ConfigError(str(exc).replace("train.base_model", "quality.embedding_model")) from None
    try:
        with quiet_transformers():
            model = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"quality.embedding_model: cannot load an encoder from {name!r} offline "
                          f"({type(exc).__name__})") from None
    return tok, model.eval()


def sentence_embeddings(texts: list[str], model: str = "bundled", *, max_length: int = 128,
                        batch_size: int = 64) -> np.ndarray:
    """(n, hidden) float32, rows L2-normalised. Texts are sorted by length so batches pad little (order restored)."""
    import torch

    tok, enc = _encoder(model)
    n = len(texts)
    if n == 0:
        return np.zeros((0, int(enc.config.hidden_size)), dtype=np.float32)
    order = np.argsort([len(t) for t in texts], kind="mergesort")
    out = np.empty((n, int(enc.config.hidden_size)), dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, n, batch_size):
            idx = order[lo:lo + batch_size]
            batch = tok([texts[i] or " " for i in idx], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
            hidden = enc(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out[idx] = torch.nn.functional.normalize(mean, dim=1).numpy()
    return out
