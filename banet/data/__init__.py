"""Datasets: image/mask pairs on disk, splits, augmentation, synthetic data."""
