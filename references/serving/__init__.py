"""Serving-side measurements: the pre/post hot path, served latency against in-process, the soak."""
