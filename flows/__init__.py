"""Prefect flows over the DVC stages. Thin: DVC owns the DAG, the stages own the logic (DESIGN.md)."""
