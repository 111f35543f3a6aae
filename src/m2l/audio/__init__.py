"""Audio input/output and the spectral representation."""
