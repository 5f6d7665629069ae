"""Benchmarks: measured, printed, never asserted (`make bench`)."""
