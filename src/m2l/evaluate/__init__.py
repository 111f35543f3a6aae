"""Objective quality metrics and spectrogram pictures for judging reconstructions."""
