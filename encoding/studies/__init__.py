"""Analyses of real data sets built on the pipeline's steps (the loaders in :mod:`encoding.datasets` only load)."""
