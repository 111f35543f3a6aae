"""m2l: open, trainable and fast consistency autoencoders for audio (Music2Latent v1 / v2)."""

from m2l.codec import Codec  # what `load` returns: `m2l.codec_v1.Codec1` or `m2l.codec_v2.Codec2`
from m2l.compat import EncoderDecoder
from m2l.errors import M2LError
from m2l.loading import convert, load

__version__ = "0.1.0"
__all__ = ["Codec", "EncoderDecoder", "M2LError", "convert", "load", "__version__"]
