"""Synthetic data for local runs and tests."""
