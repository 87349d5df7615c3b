"""Benchmarks: not tests, run by hand or by `make bench`."""
