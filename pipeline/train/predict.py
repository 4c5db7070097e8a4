"""Deployable variants: one self-contained folder each (`variant.json` + weights + tokenizer), one loader.

`load_variant(folder).predict_proba(texts)` gives fraud probabilities for any variant kind:
- `hf`: a transformers folder (fp32 merged model, pruned model, distilled student);
- `torch_int8`: config + `model_int8.pt`, a state dict of `torch.ao` dynamic int8 Linear layers and per-row int8
  embeddings, rebuilt by applying the same quantization to the config's architecture before loading;
- `onnx`: `model.onnx` run by onnxruntime (fp32 or dynamic int8);
- `sklearn`: `model.pkl`, the TF-IDF + logistic regression baseline (a pickle: load only artifacts you built).

Dynamic int8 variants (`torch_int8`, and `onnx` with precision int8) quantize activations with one scale per call,
computed over the whole batch, so a text's score would depend on the texts batched with it (up to 0.17 on the smishing
test split at batch 64). They therefore score one text per call: the same text always gets the same score, in
`compress`, `predict` and the Python API alike.
"""

from __future__ import annotations

import copy
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ConfigError
from pipeline.io import write_json
from pipeline.train.textproc import FastTokenizer, collate_np, eval_batches

VARIANT_FILE = "variant.json"
INT8_FILE = "model_int8.pt"
TORCH_KINDS = ("hf", "torch_int8")


def quantize_int8(model):
    """Dynamic int8: Linear weights per output channel (activations quantized on the fly), embeddings per-row
    weight-only int8 (`quantize_dynamic` alone leaves the 12M-parameter embedding matrix in fp32)."""
    import torch
    from torch.ao.quantization import float_qparams_weight_only_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    spec = {torch.nn.Linear: per_channel_dynamic_qconfig, torch.nn.Embedding: float_qparams_weight_only_qconfig}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = quantize_dynamic(copy.deepcopy(model).eval(), spec, dtype=torch.qint8)
    # the quantized embedding kernel needs contiguous indices; BERT passes an expanded (strided) token_type_ids
    for mod in q.modules():
        if type(mod).__name__ == "Embedding" and type(mod).__module__.startswith("torch.ao.nn.quantized"):
            mod.register_forward_pre_hook(_contiguous_inputs)
    return q


def _contiguous_inputs(_module, args):
    import torch

    return tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args)


class TorchPredictor:
    def __init__(self, model, tokenizer, max_length: int, batch_size: int = 64) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        from pipeline.train import model as M

        ids = M.encode(self.tokenizer, texts, self.max_length)
        return M.predict_ids(self.model, ids, self.pad_id, self.batch_size, dev=torch.device("cpu"))


class OnnxPredictor:
    """`model.onnx` in onnxruntime, tokenised by `tokenizers` (no torch, no transformers)."""

    def __init__(self, folder: Path, max_length: int, threads: int, batch_size: int = 64) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(threads))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = FastTokenizer(folder)
        self.max_length = max_length
        self.batch_size = batch_size
        self.pad_id = self.tokenizer.pad_token_id

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        ids = self.tokenizer.encode(texts, self.max_length)
        out = np.zeros(len(ids), dtype=np.float64)
        for b in eval_batches([len(x) for x in ids], self.batch_size):
            batch = collate_np([ids[i] for i in b], self.pad_id)
            feed = {k: v for k, v in batch.items() if k in self.inputs}
            logits = self.session.run(None, feed)[0].astype(np.float64)
            z = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(z)
            out[b] = e[:, 1] / e.sum(axis=1)
        return out


class SklearnPredictor:
    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.pipeline.predict_proba(texts)[:, 1].astype(np.float64)


def write_variant_meta(folder: Path, meta: dict[str, Any]) -> None:
    write_json(Path(folder) / VARIANT_FILE, meta)


def read_variant_meta(folder: Path) -> dict[str, Any]:
    p = Path(folder) / VARIANT_FILE
    if not p.is_file():
        raise ConfigError(f"{p}: missing; not a fraudslm model variant folder")
    return json.loads(p.read_text(encoding="utf-8"))


def dynamic_int8(meta: dict[str, Any]) -> bool:
    """Whether the variant quantizes activations per call (its scores would depend on the batch)."""
    return meta.get("kind") == "torch_int8" or (meta.get("kind") == "onnx" and meta.get("precision") == "int8")


def load_variant(folder: str | Path, threads: int = 1, batch_size: int = 64):
    """A predictor (`.predict_proba(texts) -> np.ndarray`) for a variant folder written by `fraudslm compress`.
    ONNX and sklearn variants load without importing torch or transformers."""
    folder = Path(folder)
    meta = read_variant_meta(folder)
    kind = meta.get("kind")
    if kind == "sklearn":
        with open(folder / "model.pkl", "rb") as fh:
            return SklearnPredictor(pickle.load(fh))  # noqa: S301 - our own artifact
    max_length = int(meta["max_length"])
    if dynamic_int8(meta):
        batch_size = 1  # batch-invariant scores (module doc)
    if kind == "onnx":
        return OnnxPredictor(folder, max_length, threads, batch_size)
    if kind in TORCH_KINDS:
        import torch
        from transformers import AutoConfig

        from pipeline.train import model as M

        if torch.get_num_threads() != max(1, int(threads)):
            torch.set_num_threads(max(1, int(threads)))
        tokenizer = M.load_tokenizer(str(folder))
        if kind == "hf":
            return TorchPredictor(M.load_pretrained_classifier(str(folder)), tokenizer, max_length, batch_size)
        M.register_auto_classes()
        with M.quiet_transformers():
            model = M.classifier_from_config(AutoConfig.from_pretrained(str(folder)))
        q = quantize_int8(model)
        with M.known_warnings_silenced():
            q.load_state_dict(torch.load(folder / INT8_FILE, map_location="cpu", weights_only=True))
        return TorchPredictor(q, tokenizer, max_length, batch_size)
    raise ConfigError(f"{folder / VARIANT_FILE}: unknown variant kind {kind!r}")
