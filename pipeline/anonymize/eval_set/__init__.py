"""The project's labelled PII evaluation set (residual risk of the anonymize stage): `pii_eval_v2.jsonl`, built by
`build.py` from the project's own generator with a fixed seed. It is synthetic, versioned, and used for evaluation
only: no detector is trained or tuned on it, and it shares no seed with the demo data or any training data."""
