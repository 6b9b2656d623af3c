"""Accuracy and speed harnesses for samestory; they print tables (see ``benchmarks/README.md``)."""
