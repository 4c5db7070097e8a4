"""Model stages: LoRA fine-tune (`run_train`), compression and the size/latency/accuracy table (`run_compress`)."""

from pipeline.train.trainer import run_train


def run_compress(*args, **kwargs):  # lazy: compression pulls in onnx/onnxruntime/sklearn
    from pipeline.train.compress import run_compress as _run

    return _run(*args, **kwargs)


__all__ = ["run_train", "run_compress"]
