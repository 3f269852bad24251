"""Reusable benchmark code, shared by the ``benchmarks/`` scripts and ``trio-replica bench``."""
