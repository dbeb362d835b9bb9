"""Precision measurements: INT8 recipes, the spread of the CPU ratios, per-precision parity, TensorRT builds."""
