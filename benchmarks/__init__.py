"""Benchmarks: they print figures and save them under bench-results/; tests check behaviour."""
