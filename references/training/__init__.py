"""Experiments that train models: banet-compare (BA-Net against the comparison networks), before/after."""
