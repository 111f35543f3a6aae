"""VGGish, written here from its published description, with weights from a local file only.

VGGish (Hershey et al., "CNN Architectures for Large-Scale Audio Classification", ICASSP 2017,
and the notes of its AudioSet release) is the embedding model behind published FAD numbers. What
this module implements, from that description:

Front end (`vggish_log_mel`): audio at 16 kHz mono; magnitude STFT with 25 ms (400-sample)
periodic Hann windows, a 10 ms (160-sample) hop and a 512-point FFT (the window zero-padded);
frames are not centred (frame k covers samples [160 k, 160 k + 400)); 64 triangular mel filters
spaced evenly on the HTK mel scale (1127 ln(1 + f / 700)) between 125 Hz and 7500 Hz, each rising
from 0 to 1 and back linearly in mels, unnormalised; log(mel + 0.01); then non-overlapping
examples of 96 frames (0.96 s) by 64 bands. Clips shorter than one example (15600 samples) are
zero-padded to it; frames after the last whole example are dropped.

Network (`VGGish`): input [batch, 1, 96, 64]; 3x3 convolutions (stride 1, padding 1) with ReLU
and 2x2 max pooling (stride 2) in four blocks: conv1 (64), pool; conv2 (128), pool; conv3_1,
conv3_2 (256), pool; conv4_1, conv4_2 (512), pool, leaving [512, 6, 4]; flattened in
(frames, bands, channels) order, i.e. the channels-last layout of the original TensorFlow release,
to 12288 features; then fully connected fc1_1 (4096, ReLU), fc1_2 (4096, ReLU) and fc2 (128, the
embedding, no activation). The release's PCA whitening and 8-bit quantisation are not applied.

No weights ship with m2l and none are downloaded: `load_vggish` reads a local state dict
(.safetensors, or a .pt/.pth file through `torch.load(weights_only=True)`) whose keys and shapes
must match `VGGish().state_dict()` exactly: conv1.weight [64, 1, 3, 3], conv1.bias [64], ...,
fc1_1.weight [4096, 12288], ..., fc2.weight [128, 4096], fc2.bias [128] (torch layouts:
conv [out, in, kh, kw], linear [out, in]). Weights converted from another release need their keys
renamed (and TensorFlow kernels transposed) to this layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from m2l.errors import M2LError

SAMPLE_RATE = 16000
WINDOW = 400  # 25 ms
HOP = 160  # 10 ms
N_FFT = 512
N_MELS = 64
F_MIN, F_MAX = 125.0, 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s
EMBEDDING_DIM = 128
MIN_SAMPLES = WINDOW + (EXAMPLE_FRAMES - 1) * HOP  # 15600: one whole example

_CONVS = (
    ("conv1", 1, 64),
    ("conv2", 64, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
)
_POOL_AFTER = frozenset({"conv1", "conv2", "conv3_2", "conv4_2"})
_FCS = (("fc1_1", 512 * 6 * 4, 4096), ("fc1_2", 4096, 4096), ("fc2", 4096, EMBEDDING_DIM))


def htk_mel(hz: torch.Tensor) -> torch.Tensor:
    """Hz -> HTK mels, 1127 ln(1 + f / 700), elementwise."""
    return 1127.0 * torch.log1p(hz / 700.0)


def vggish_mel_filters(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The 64 HTK-mel triangles of the VGGish front end.

    Returns:
        [64, 257] weights over the bins k * 16000 / 512 (k = 0 .. 256); filter m peaks at 1 on
        edge m + 1 of 66 edges spaced evenly in HTK mels from 125 Hz to 7500 Hz.
    """
    bins = htk_mel(torch.arange(N_FFT // 2 + 1, dtype=torch.float64) * SAMPLE_RATE / N_FFT)
    lo, hi = htk_mel(torch.tensor([F_MIN, F_MAX], dtype=torch.float64))
    edges = torch.linspace(float(lo), float(hi), N_MELS + 2, dtype=torch.float64)
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (bins - left) / (centre - left)
    fall = (right - bins) / (right - centre)
    return torch.minimum(rise, fall).clamp(min=0.0).to(dtype)


def vggish_log_mel(audio: torch.Tensor) -> torch.Tensor:
    """VGGish input examples from a 16 kHz mono waveform.

    Args:
        audio: [samples] waveform at 16 kHz (padded with zeros to 15600 samples when shorter).

    Returns:
        [examples, 96, 64] float32 log-mel patches, examples = floor(frames / 96) with
        frames = 1 + (max(samples, 15600) - 400) // 160.

    Raises:
        M2LError: When `audio` is not a non-empty, finite, real 1-D tensor.
    """
    wave = check_waveform(audio, "vggish: audio")
    if wave.shape[0] < MIN_SAMPLES:
        wave = F.pad(wave, (0, MIN_SAMPLES - wave.shape[0]))
    frames = wave.unfold(0, WINDOW, HOP)  # [frames, 400]
    window = torch.hann_window(WINDOW, periodic=True, dtype=torch.float64)
    mag = torch.fft.rfft(frames * window, n=N_FFT).abs()  # [frames, 257]
    log_mel = torch.log(mag @ vggish_mel_filters().T + LOG_OFFSET)  # [frames, 64]
    examples = log_mel.shape[0] // EXAMPLE_FRAMES
    return log_mel[: examples * EXAMPLE_FRAMES].reshape(examples, EXAMPLE_FRAMES, N_MELS).float()


def check_waveform(audio: torch.Tensor, what: str, channels: bool = False) -> torch.Tensor:
    """Validate a waveform and return it as float64 on the CPU, or raise a one-line M2LError.

    Args:
        audio: [samples], or [channels, samples] too when `channels`; finite real samples.
        what: the subject of the error message, e.g. "visqol: estimate".
        channels: accept [channels, samples] as well as mono [samples].
    """
    layout = "a waveform [samples] or [channels, samples]" if channels else "a mono waveform [samples]"
    if (
        not isinstance(audio, torch.Tensor)
        or audio.dim() not in ((1, 2) if channels else (1,))
        or (audio.numel() == 0)
    ):
        shape = list(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise M2LError(f"{what} must be {layout}, got {shape}")
    if audio.is_complex() or audio.dtype == torch.bool:
        raise M2LError(f"{what} must hold real samples, got dtype {audio.dtype}")
    wave = audio.detach().to("cpu", torch.float64)
    if not torch.isfinite(wave).all():
        raise M2LError(f"{what} contains NaN or Inf")
    return wave


class VGGish(nn.Module):
    """The VGGish network: [batch, 96, 64] log-mel patches -> [batch, 128] embeddings."""

    def __init__(self) -> None:
        super().__init__()
        for name, c_in, c_out in _CONVS:
            self.add_module(name, nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        for name, f_in, f_out in _FCS:
            self.add_module(name, nn.Linear(f_in, f_out))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """Embed log-mel patches.

        Args:
            patches: [batch, 96, 64] log-mel examples from `vggish_log_mel`.

        Returns:
            [batch, 128] embeddings (before any PCA or quantisation).
        """
        h = patches.unsqueeze(1)
        for name, _, _ in _CONVS:
            h = F.relu(getattr(self, name)(h))
            if name in _POOL_AFTER:
                h = F.max_pool2d(h, kernel_size=2, stride=2)
        h = h.permute(0, 2, 3, 1).flatten(1)  # channels-last flattening: [batch, 6 * 4 * 512]
        h = F.relu(self.fc1_1(h))
        h = F.relu(self.fc1_2(h))
        return self.fc2(h)


class VGGishEmbedder:
    """`Embedder` wrapping a `VGGish` network: one 128-d embedding per 0.96 s of 16 kHz audio.

    Attributes:
        name: "vggish".
        sample_rate: 16000.
        model: the network (in eval mode).
    """

    name = "vggish"
    sample_rate = SAMPLE_RATE

    def __init__(self, model: VGGish, batch_size: int = 32) -> None:
        self.model = model.eval()
        self.batch_size = batch_size

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """Embed a waveform.

        Args:
            audio: [samples] mono waveform at 16 kHz.

        Returns:
            [examples, 128] float32 embeddings (see `vggish_log_mel` for the example count).
        """
        patches = vggish_log_mel(audio)
        param = next(self.model.parameters())
        out = []
        with torch.no_grad():
            for start in range(0, patches.shape[0], self.batch_size):
                batch = patches[start : start + self.batch_size].to(param.device, param.dtype)
                out.append(self.model(batch).float().cpu())
        return torch.cat(out, dim=0)


def _read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """Read a flat state dict from .safetensors or a torch file (weights_only)."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any reader failure becomes one line naming the file
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise M2LError(f"vggish weights {path}: cannot read them ({reason})") from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise M2LError(f"vggish weights {path}: expected a flat state dict of tensors (name -> tensor)")
    return state


def _listing(names: list[str]) -> str:
    """First few names, comma-separated, with a count of the rest."""
    more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
    return ", ".join(names[:3]) + more


def load_vggish(weights: str | Path, device: str | torch.device = "cpu") -> VGGishEmbedder:
    """Build a VGGish embedder from a local state-dict file.

    Args:
        weights: path to a .safetensors, .pt or .pth file holding exactly the keys and shapes of
            `VGGish().state_dict()` (floating tensors; they are cast to float32).
        device: where to run the network.

    Returns:
        A `VGGishEmbedder`.

    Raises:
        M2LError: When the file is missing or unreadable, or its keys, shapes or dtypes do not fit.
    """
    path = Path(weights).expanduser()
    if not path.is_file():
        raise M2LError(f"vggish weights {path}: no such file (pass a local .safetensors/.pt state dict)")
    state = _read_state_dict(path)
    with torch.device("meta"):
        model = VGGish()
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"missing {_listing(missing)}"] if missing else []) + (
            [f"unexpected {_listing(unexpected)}"] if unexpected else []
        )
        raise M2LError(f"vggish weights {path}: keys do not fit the VGGish layout: {'; '.join(parts)}")
    wrong = [
        f"{k} {list(state[k].shape)} (want {list(shape)})"
        for k, shape in expected.items()
        if tuple(state[k].shape) != shape
    ]
    if wrong:
        raise M2LError(f"vggish weights {path}: wrong shapes: {_listing(wrong)}")
    bad = sorted(k for k, v in state.items() if not v.is_floating_point())
    if bad:
        raise M2LError(f"vggish weights {path}: non-floating tensors: {_listing(bad)}")
    tensors = {k: v.to(device=device, dtype=torch.float32).contiguous() for k, v in state.items()}
    if not all(bool(torch.isfinite(v).all()) for v in tensors.values()):
        raise M2LError(f"vggish weights {path}: tensors contain NaN or Inf")
    model.load_state_dict(tensors, strict=True, assign=True)
    return VGGishEmbedder(model)
