"""What the model reads, without torch: placeholder reduction, tokenisation (the `tokenizers` library on the
folder's `tokenizer.json`, identical ids to the transformers tokenizer), length-sorted batches and numpy padding.

The ONNX and sklearn variants score through this module only, so `fraudslm predict` on them never imports torch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

# anonymization placeholders: keyed pseudonyms `<PERSON_0123456789ab>` and redactions `<CREDIT_CARD>`
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]*?)(?:_[0-9a-f]{6,})?>")
# recorded in every variant folder: how placeholders were reduced before tokenisation (predict does the same)
PLACEHOLDER_HANDLING = "type_words_v1"


def model_text(text: str) -> str:
    """What the model reads: each placeholder reduced to its type in words (`<PERSON_0123456789ab>` -> `person`).
    The pseudonym's hex digits carry no meaning for a language model (measured: the TF-IDF baseline loses nothing
    without them) yet cost ~8 word pieces each, pushing the words that matter past `max_length`."""
    return _PLACEHOLDER.sub(lambda m: m.group(1).lower().replace("_", " "), text)


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[j: j + batch_size] for j in range(0, len(order), batch_size)]


def collate_np(ids: list[list[int]], pad_id: int) -> dict[str, np.ndarray]:
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


class FastTokenizer:
    """`tokenizer.json` through the `tokenizers` library: truncation to max_length, special tokens added, no
    padding (batches are padded by `collate_np`)."""

    def __init__(self, folder: str | Path) -> None:
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.no_padding()
        pad_id = None
        cfg = folder / "tokenizer_config.json"
        pad_token = "[PAD]"
        if cfg.is_file():
            pad_token = json.loads(cfg.read_text(encoding="utf-8")).get("pad_token") or pad_token
            if isinstance(pad_token, dict):
                pad_token = pad_token.get("content", "[PAD]")
        pad_id = self.tok.token_to_id(str(pad_token))
        self.pad_token_id = 0 if pad_id is None else int(pad_id)

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        self.tok.enable_truncation(max_length=int(max_length))
        return [list(e.ids) for e in self.tok.encode_batch([model_text(t) for t in texts], add_special_tokens=True)]
