"""Consistency training of m2l models: data, objective, loop, checkpoints."""
