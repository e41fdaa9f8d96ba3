"""Benchmarks that print comparison tables (ours against a baseline in the same run)."""
