"""fraudslm: privacy-preserving data pipeline and fraud SLM fine-tuning."""

__version__ = "0.1.0"
