"""`m2l.load`: build a codec from a preset, an m2l checkpoint or the authors' checkpoint."""

from __future__ import annotations

import os
import socket
import urllib.parse
import warnings
from pathlib import Path

import torch

from m2l.checksummed import tensors_digest
from m2l.codec import Codec
from m2l.codec_v1 import Codec1
from m2l.config import DEFAULT_MODEL, PRESETS, ModelConfig, config_hash, preset, preset_name
from m2l.errors import M2LError, did_you_mean
from m2l.formats import list_checkpoints, load_checkpoint, save_checkpoint, training_state_weights
from m2l.models import create
from m2l.models.v1_authors import convert_authors_state_dict
from m2l.sniff import FileKind, Kind, sniff

HUB_REPO, HUB_FILE = "SonyCSLParis/music2latent", "music2latent.pt"
AUTHORS_NAME = "music2latent"
UNTRAINED_SEED = 0
"""The seed a preset's untrained weights are drawn with, so that a preset names one model in
every process (a latent file made with it decodes later; torchrun ranks agree)."""
UNTRAINED_TAG = f"@untrained-seed{UNTRAINED_SEED}"
"""What follows the preset name in the model id of a preset loaded without weights."""


def default_checkpoint() -> Path:
    """Path of the shipped default model (package data)."""
    path = Path(__file__).parent / "weights" / "m2l-default.safetensors"
    if not path.is_file():
        raise M2LError(f"the shipped default model is missing ({path}); reinstall m2l or pass --model")
    return path


def read_authors_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The authors' torch checkpoint {'gen_state_dict': ...}, loaded without unpickling code."""
    found = sniff(path)
    if found.kind is not Kind.AUTHORS_CHECKPOINT:
        raise M2LError(f"{path}: {found.description}, not a torch checkpoint")
    return _torch_state(Path(path))


def _torch_state(path: Path) -> dict[str, torch.Tensor]:
    """`gen_state_dict` of a file `sniff` found to be a torch archive (weights_only: no code runs)."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for bad archives
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise M2LError(f"{path}: cannot read torch checkpoint ({reason})") from None
    state = data.get("gen_state_dict") if isinstance(data, dict) else None
    if not isinstance(state, dict):
        raise M2LError(f"{path}: torch checkpoint has no 'gen_state_dict' (not Music2Latent)")
    return state


def run_checkpoint(run: Path) -> Path:
    """The checkpoint a training run folder stands for: its best, else its newest."""
    ckpts = run / "checkpoints"
    if (ckpts / "best.safetensors").is_file():
        return ckpts / "best.safetensors"
    found = list_checkpoints(ckpts)
    if not found:
        raise M2LError(f"{run}: no training checkpoint found (expected {ckpts}/step-*.safetensors)")
    return found[-1][1]


def load_model(
    source: str | os.PathLike, checkpoint: str | os.PathLike | None = None
) -> tuple[torch.nn.Module, str]:
    """Resolve a source to (model, model_id). See `load` for the accepted sources."""
    name = preset_name(str(source))
    if name in PRESETS:
        config = preset(name)
        if checkpoint is None:
            warnings.warn(f"{name}: no checkpoint given, using untrained weights", stacklevel=3)
            return untrained(config), f"{name}{UNTRAINED_TAG}"
        model, model_id = load_model(checkpoint)
        if config_hash(model.cfg) != config_hash(config):
            raise M2LError(f"{checkpoint}: checkpoint is a {model.cfg.name} model, not {name}")
        return model, model_id
    if name == AUTHORS_NAME:
        return load_model(fetch_authors_checkpoint())
    if name == DEFAULT_MODEL:  # an m2l checkpoint: read as one, without asking what it is
        model, model_id = checkpoint_model(default_checkpoint())
        return model, f"{DEFAULT_MODEL}:{model_id}"
    path = Path(source)
    if path.is_dir():
        return load_model(run_checkpoint(path))
    if not os.path.lexists(path):
        raise M2LError(
            f"{source}: no such checkpoint file or preset{_closest_presets(str(source))} "
            f"(presets: {', '.join(sorted(PRESETS))}, {DEFAULT_MODEL!r} or {AUTHORS_NAME!r})"
        )
    return load_file(sniff(path))


def _closest_presets(word: str) -> str:
    """' (did you mean A or B?)': the presets whose name holds every part of `word` (a training
    preset's name such as "small-v2-stereo" names m2l-v2-small-stereo), else the closest
    spelling; '' if none is close."""
    parts = set(word.split("-")) - {"m2l", ""}
    close = [name for name in sorted(PRESETS) if parts and parts <= set(name.split("-"))]
    return f" (did you mean {' or '.join(close)}?)" if close else did_you_mean(word, PRESETS)


def untrained(config: ModelConfig) -> torch.nn.Module:
    """The untrained model of `config`, its weights drawn with `UNTRAINED_SEED` (torch's global
    generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        return create(config)


def load_file(found: FileKind) -> tuple[torch.nn.Module, str]:
    """(model, model_id) from a file `m2l.sniff.sniff` has looked at: an m2l checkpoint, a
    training checkpoint (its EMA weights) or the authors' checkpoint."""
    path = found.path
    if found.kind is Kind.TRAINING_STATE:
        state, config = training_state_weights(path)
        return create(config, state, source=str(path)), f"{config.name}@{tensors_digest(state)[:12]}"
    if found.kind in (Kind.CHECKPOINT, Kind.SAFETENSORS):  # the latter: load_checkpoint says what is wrong
        return checkpoint_model(path)
    if found.kind is Kind.UNKNOWN:
        raise M2LError(f"{path}: neither an m2l (safetensors) nor a torch checkpoint")
    if found.kind is not Kind.AUTHORS_CHECKPOINT:
        raise M2LError(f"{path}: is {found.description}, not a model checkpoint")
    config = preset("m2l-v1")
    ours = create(config)
    state = convert_authors_state_dict(_torch_state(path), config, ours.state_dict(), str(path))
    ours.load_state_dict(state)
    return ours, f"{AUTHORS_NAME}@{tensors_digest(state)[:12]}"


def checkpoint_model(path: Path) -> tuple[torch.nn.Module, str]:
    """(model, model_id) of an m2l inference checkpoint (`m2l.formats.load_checkpoint`)."""
    state, config, meta = load_checkpoint(path)
    return create(config, state, source=str(path)), f"{config.name}@{meta['tensors_sha256'][:12]}"


def load(
    source: str | os.PathLike = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    checkpoint: str | os.PathLike | None = None,
    **codec_options: object,
) -> Codec:
    """Load a codec.

    Args:
        source: "default" (the model shipped with m2l, offline), a preset name of
            `m2l.config.PRESETS` such as "m2l-v1-small" or "m2l-v2-tiny" (a former name of
            `m2l.config.PRESET_ALIASES` is accepted) (with `checkpoint`, or alone for
            untrained weights), a path to an m2l checkpoint
            (safetensors), a training run folder (its best checkpoint, else its newest), a path to
            the authors' `music2latent.pt`, or "music2latent" to fetch
            the authors' checkpoint from the model hub (needs network).
        device: "cpu", "cuda", "mps"...; the best available if None.
        dtype: compute dtype (float32 if None).
        checkpoint: weights for a preset source.
        **codec_options: passed to the codec (v1 `Codec1`: window_seconds, context, batch_size;
            v2 `Codec2`: batch_size, chunk_batch, window_seconds).

    Returns:
        A ready `Codec`: a `Codec1` (v1) or `Codec2` (v2).
    """
    model, model_id = load_model(source, checkpoint)
    codec = make_codec(model, model_id=model_id, device=device, dtype=dtype, **codec_options)
    codec.source = model_source(source, checkpoint)
    return codec


def model_source(source: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> str:
    """What a latent file records so that `load` finds its model again: a name ("default",
    "music2latent", an untrained preset by its current name) or the absolute path of the
    checkpoint file (a run folder resolves to the checkpoint it gave)."""
    if checkpoint is not None:
        return str(Path(checkpoint).resolve())
    name = preset_name(str(source))
    if name in PRESETS or name in (DEFAULT_MODEL, AUTHORS_NAME):
        return name
    path = Path(source)
    return str((run_checkpoint(path) if path.is_dir() else path).resolve())


def make_codec(model: torch.nn.Module, **options: object) -> Codec:
    """The codec class of the model's architecture (its config's kind) around `model`."""
    from m2l.codec_v2 import Codec2

    codecs: dict[str, type[Codec1] | type[Codec2]] = {Codec1.version: Codec1, Codec2.version: Codec2}
    return codecs[model.cfg.kind](model, **options)


def convert(source: str | os.PathLike, out: str | os.PathLike, *, force: bool = False) -> str:
    """Write any loadable source as an m2l checkpoint; returns the model id."""
    model, model_id = load_model(source)
    save_checkpoint(out, model.state_dict(), model.cfg, force=force, extra={"converted_from": str(source)})
    return model_id


HUB_TIMEOUT_S = 3.0  # how long to wait for the hub's host before calling it unreachable
GET_IT_YOURSELF = "download music2latent.pt elsewhere and load it by path (m2l.load(PATH), or --model PATH)"


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether the model hub's host accepts a connection within `timeout` seconds (no retries)."""
    endpoint = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def fetch_authors_checkpoint() -> Path:
    """Find the authors' checkpoint in the hub's local cache, else download it.

    Offline (`HF_HUB_OFFLINE=1`, or the hub's host not answering within `HUB_TIMEOUT_S`) fails at
    once with one line instead of waiting through the hub client's retries.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise M2LError(
            f"fetching 'music2latent' needs huggingface_hub (pip install 'm2l[hub]'); or {GET_IT_YOURSELF}"
        ) from None
    try:
        return Path(hf_hub_download(HUB_REPO, HUB_FILE, local_files_only=True))
    except Exception:  # not cached (or no usable cache): go online below
        pass
    where = f"the authors' checkpoint {HUB_REPO}/{HUB_FILE}"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise M2LError(f"{where} is not in the local cache and HF_HUB_OFFLINE is set; {GET_IT_YOURSELF}")
    if not hub_reachable():
        raise M2LError(f"cannot fetch {where}: the model hub is unreachable (offline?); {GET_IT_YOURSELF}")
    try:
        return Path(hf_hub_download(HUB_REPO, HUB_FILE))
    except Exception as err:  # hub down, repo moved: one clear line
        raise M2LError(f"cannot fetch {where} ({type(err).__name__}); {GET_IT_YOURSELF}") from None
