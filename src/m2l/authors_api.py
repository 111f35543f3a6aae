"""`EncoderDecoder`: a drop-in for the authors' inference class, backed by m2l.

Same method and argument names; numpy in and out. Differences, all deliberate:
- stereo arrays may be [channels, samples] or the authors' documented [samples, channels];
- clips are padded at the end instead of cropped (one more latent frame when the length is not
  a whole number of frames), with the authors' time alignment (no padding before the audio);
- decoding takes an optional `seed` and is reproducible with it;
- weights load without pickle; `load_path_inference=None` fetches the authors' checkpoint;
- any m2l model loads, v2 included: its latents then have the v2 layout (`m2l.codec_v2`), and
  `max_waveform_length` bounds the audio of one encoder pass (v2 decodes two chunks at a time).
"""

from __future__ import annotations

import numpy as np
import torch

from m2l.errors import M2LError
from m2l.framing import checked_int
from m2l.loading import AUTHORS_NAME, load


class EncoderDecoder:
    """Music2Latent encoder/decoder with the authors' interface."""

    def __init__(self, load_path_inference: str | None = None, device: str | None = None) -> None:
        # the authors code a stereo pair as left/right, each channel with its own noise
        self.codec = load(load_path_inference or AUTHORS_NAME, device=device, stereo="lr")
        self.device = self.codec.device

    def _options(self, max_waveform_length: int | None, max_batch_size: int | None) -> None:
        if max_waveform_length is not None:
            self.codec.set_window_samples(max_waveform_length)
        if max_batch_size is not None:
            self.codec.batch_size = checked_int(max_batch_size, "max_batch_size", 1)

    def encode(
        self,
        path_or_audio: object,
        max_waveform_length: int | None = None,
        max_batch_size: int | None = None,
        extract_features: bool = False,
    ) -> np.ndarray:
        """Path or waveform ([samples], [channels, samples] or [samples, channels]) at the model
        rate -> latents [channels, 64, frames] (or features [channels, dim, frames])."""
        self._options(max_waveform_length, max_batch_size)
        audio = path_or_audio
        if (
            isinstance(audio, np.ndarray | torch.Tensor)
            and audio.ndim == 2
            and audio.shape[1] <= 2 < audio.shape[0]
        ):
            audio = audio.T  # the authors' documented [samples, channels] layout
        if isinstance(audio, np.ndarray | torch.Tensor) and audio.ndim > 2:
            raise M2LError(f"audio: expected [samples] or [channels, samples], got {audio.shape}")
        z = self.codec.encode(audio, features=extract_features, left_pad=0)
        return z.numpy()

    def decode(
        self,
        latent: object,
        denoising_steps: int = 1,
        max_waveform_length: int | None = None,
        max_batch_size: int | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Latents [channels, 64, frames] (or [64, frames]) -> waveform [channels, samples]."""
        self._options(max_waveform_length, max_batch_size)
        z = latent if isinstance(latent, torch.Tensor) else torch.as_tensor(np.asarray(latent))
        if z.dim() == 2:
            z = z[None]
        return self.codec.decode(z, steps=denoising_steps, seed=seed, left_pad=0).numpy()
