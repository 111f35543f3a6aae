"""m2l: open, trainable and fast consistency autoencoders for audio (Music2Latent v1 / v2).

The public names resolve on first access (`m2l.load`, `from m2l import Codec`), so that importing
a light part of the package (the `m2l --help` parser, `m2l.errors`) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from m2l.lazy import lazy_attribute, lazy_names

if TYPE_CHECKING:
    from m2l.authors_api import EncoderDecoder
    from m2l.codec import Codec  # what `load` returns: `m2l.codec_v1.Codec1` or `m2l.codec_v2.Codec2`
    from m2l.errors import M2LError
    from m2l.generate.checkpoint import load_generator
    from m2l.loading import convert, load

__version__ = "0.1.0"
__all__ = ["Codec", "EncoderDecoder", "M2LError", "convert", "load", "load_generator", "__version__"]

_LAZY = {
    "Codec": "m2l.codec",
    "EncoderDecoder": "m2l.authors_api",
    "M2LError": "m2l.errors",
    "convert": "m2l.loading",
    "load": "m2l.loading",
    "load_generator": "m2l.generate.checkpoint",
}


def __getattr__(name: str) -> Any:
    """An exported name, imported from its module on first access."""
    return lazy_attribute(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return lazy_names(_LAZY, globals())
