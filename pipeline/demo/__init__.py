"""Seeded generator of the embedded demo sources (five fragmented finance-fraud sources) with ground truth."""

from pipeline.demo.generator import SOURCES, generate, source_counts

__all__ = ["SOURCES", "generate", "source_counts"]
