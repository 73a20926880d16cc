"""Correlation tests: the reference model (reference.py) and its rule cases."""
