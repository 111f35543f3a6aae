"""Downstream MIR probes (`m2l probe`): how much pitch, instrument, key, tempo and meter
information the latents hold.

`features` reads a labelled manifest (isolated notes or music excerpts) and extracts clip-level
features (the papers' MIR features, the plain latents, an untrained encoder and log-mel
statistics) with an on-disk cache; `probes` trains linear and one-hidden-layer probes on them;
`cli` is the command.
"""

TASK_FIELDS = {
    "pitch": "pitch",
    "pitch_class": "pitch_class",
    "instrument": "program",
    "key": "key",
    "key_mode": "key_mode",
    "tonic": "tonic",
    "tempo": "tempo_class",
    "meter": "meter",
}
"""Probe task -> the manifest field that labels it (defined here, torch-free, for the parser)."""
TEXT_TASKS = frozenset({"key", "key_mode", "meter"})
"""Tasks whose labels may be strings (each distinct value is a class); the others are integers."""
SET_TASKS = {"notes": ("pitch", "pitch_class", "instrument"), "excerpts": ("key", "tempo", "meter")}
"""The default tasks of a manifest of isolated notes, and of one of music excerpts (with "key")."""
