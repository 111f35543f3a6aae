"""Downstream MIR probes (`m2l probe`): how much pitch and instrument information the latents hold.

`features` reads a labelled note manifest and extracts clip-level features (the papers' MIR
features, the plain latents, an untrained encoder and log-mel statistics) with an on-disk cache;
`probes` trains linear and one-hidden-layer probes on them; `cli` is the command.
"""

TASK_FIELDS = {"pitch": "pitch", "pitch_class": "pitch_class", "instrument": "program"}
"""Probe task -> the manifest field that labels it (defined here, torch-free, for the parser)."""
