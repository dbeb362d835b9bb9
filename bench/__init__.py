"""Benchmarks: latency, throughput and mask parity of every backend, side by side.

``bench/`` is the top floor: it may import ``banet``, ``export`` and ``triton_repo``; nothing
imports it back. Heavy or optional dependencies are imported inside the functions that use them.
"""
