"""The consistency-model framework shared by v1, v2 and training."""
