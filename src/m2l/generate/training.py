"""`m2l gen train`: train a latent generator on a latent dataset, in a run folder.

The run folder follows the codec trainer's conventions (`m2l.train`):

    RUN/config.json                 the generator and training configs, fixed per run, and the
                                    dataset (its path, and `dataset_content`: files, frames and a
                                    digest of its index, `m2l.generate.data.dataset_identity`)
    RUN/log.jsonl                   {"step", "loss", "lr"} lines, and {"step", "val_loss"} ones
    RUN/checkpoints/step-NNNNNNNNN.safetensors
                                    training states (format "m2l-generator-train-state": model,
                                    EMA and AdamW tensors in float32), the last `keep_last` kept
    RUN/generator.safetensors       the EMA weights as a generator file (`m2l.generate.checkpoint`),
                                    written at each checkpoint: what `m2l generate --model RUN` uses
    RUN/.lock                       held while training (`m2l.train.run_folder.RunLock`)

Running the same command again resumes from the newest state that passes its checksum; another
config or another dataset (by content digest; by path for runs that predate it) is refused unless
`change_config` allows a new training config or dataset (never another network). Configs and
states written before a field was added (`precision`, `objective`) read it as its default.
SIGTERM and Ctrl-C finish the step, save a state and return.

The loss is the one of the network's objective (`GeneratorConfig.objective`): the rectified-flow
loss (`m2l.generate.flow`) or the EDM loss (`m2l.generate.edm`). With precision "bf16" the
forward pass and loss run under `torch.autocast` in bfloat16 (CPU or CUDA); weights, gradients,
AdamW and the EMA stay float32.

Every step draws its crops, context masks, flow times or noise levels, and noise from a generator
seeded by (seed, step) alone, so a resumed run repeats an uninterrupted one exactly. The
validation loss is that loss of the EMA weights on fixed crops, masks and noise of the held-out
segments (file rows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from m2l.checksummed import atomic_save, meta_int, meta_json, seal
from m2l.errors import M2LError
from m2l.files import write_text
from m2l.formats import list_checkpoints, read_safetensors, step_path
from m2l.generate.checkpoint import RUN_GENERATOR_NAME, save_generator
from m2l.generate.data import LatentSplit
from m2l.generate.edm import edm_loss
from m2l.generate.flow import context_masks, flow_loss
from m2l.generate.model import Generator, GeneratorConfig, generator_config_from_dict
from m2l.generate.train_config import GenTrainConfig, gen_train_config_from_dict, gen_train_config_to_dict
from m2l.sniff import GENERATOR_STATE_FORMAT
from m2l.train.run_folder import CONFIG_NAME, RunLock
from m2l.train.schedule import cosine
from m2l.train.state import EMA, restore

STATE_VERSION = 1


def step_generator(seed: int, *key: int | str) -> torch.Generator:
    """A CPU generator seeded by a hash of (seed, *key): the same draws for the same key."""
    digest = hashlib.sha256(repr((seed, *key)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def pick_device(name: str | None) -> torch.device:
    """The device `name`, or CUDA when there is one, else the CPU."""
    if name is not None:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def lr_at(step: int, cfg: GenTrainConfig) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay from lr to lr / 10 at `steps`."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    frac = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cosine(frac, cfg.lr, cfg.lr / 10)


@dataclass
class Run:
    """What a training run works with (made by `start_run`)."""

    folder: Path
    cfg: GenTrainConfig
    data: LatentSplit
    model: Generator
    ema: EMA
    optimizer: torch.optim.Optimizer
    device: torch.device
    step: int = 0
    stop: str = ""


def run_config(gcfg: GeneratorConfig, cfg: GenTrainConfig, dataset: dict[str, Any]) -> dict[str, Any]:
    """The JSON of `RUN/config.json` (`dataset`: a `LatentSplit.identity`)."""
    generator = dataclasses.asdict(gcfg)
    content = {k: v for k, v in dataset.items() if k != "path"}
    return {
        "generator": generator,
        "train": gen_train_config_to_dict(cfg),
        "dataset": dataset["path"],
        "dataset_content": content,
    }


def check_run_config(folder: Path, asked: dict[str, Any], change_config: bool) -> None:
    """Refuse a config that differs from the run's (the training part and the dataset are allowed
    with `change_config`); write `config.json` when the run is new, the change is allowed, or the
    run's config predates a recorded field.

    Raises:
        M2LError: another network, or another training config or dataset without `change_config`.
    """
    path = folder / CONFIG_NAME
    if not path.exists():
        if list_checkpoints(folder / "checkpoints"):
            raise M2LError(f"{folder}: checkpoints without config.json; restore it or use a new --out")
        write_text(path, json.dumps(asked, indent=1) + "\n", force=True)
        return
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise M2LError(f"{path}: unreadable run config ({err}); fix or remove it") from None
    if not isinstance(found, dict):
        raise M2LError(f"{path}: malformed run config (not an object); fix or remove it")
    network = generator_config_from_dict(found.get("generator"), str(path))
    if dataclasses.asdict(network) != asked["generator"]:
        raise M2LError(f"{folder}: this run trains another generator (config.json differs); use a new --out")
    train = gen_train_config_to_dict(gen_train_config_from_dict(found.get("train"), str(path)))
    changed = sorted(k for k in asked["train"] if train[k] != asked["train"][k])
    if changed and not change_config:
        raise M2LError(
            f"{folder}: the training config differs from the run's in {', '.join(changed)} "
            "(pass --change-config to go on with the new one, or use a new --out)"
        )
    other = other_dataset(found, asked)
    if other and not change_config:
        raise M2LError(
            f"{folder}: this run trained on {other}; pass --change-config to go on with the new "
            "dataset, or use a new --out"
        )
    if changed or other or found != asked:
        write_text(path, json.dumps(asked, indent=1) + "\n", force=True)


def other_dataset(found: dict[str, Any], asked: dict[str, Any]) -> str:
    """How the run's dataset (`found`, a run config) differs from the asked one, naming both, or ""
    when they are the same: the same content digest, or the same path for a run that recorded
    none."""
    content, path = found.get("dataset_content"), str(found.get("dataset"))
    if isinstance(content, dict):
        if content.get("sha256") == asked["dataset_content"]["sha256"]:
            return ""
        return f"{_described(path, content)}, not {_described(asked['dataset'], asked['dataset_content'])}"
    return "" if path == asked["dataset"] else f"{path}, not {asked['dataset']} (another path)"


def _described(path: str, content: dict[str, Any]) -> str:
    """A dataset in words: its path, files, frames and the start of its digest."""
    digest = str(content.get("sha256", ""))[:12]
    return f"{path} ({content.get('files')} files, {content.get('frames')} frames, sha256 {digest}...)"


def save_state(run: Run) -> Path:
    """Write the training state of `run.step` atomically, then drop all but the last `keep_last`."""
    tensors = {f"model.{k}": v.detach().float() for k, v in run.model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in run.ema.state.items()})
    opt = run.optimizer.state_dict()
    for idx, state in opt["state"].items():
        tensors.update({f"optim.{idx}.{key}": torch.as_tensor(value) for key, value in state.items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {
        "format": GENERATOR_STATE_FORMAT,
        "version": str(STATE_VERSION),
        "step": str(run.step),
        "train_config": json.dumps(gen_train_config_to_dict(run.cfg)),
        "generator_config": json.dumps(dataclasses.asdict(run.model.cfg)),
        "param_groups": json.dumps(opt["param_groups"]),
        "ema_updates": str(run.ema.updates),
    }
    path = step_path(run.folder / "checkpoints", run.step)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(tensors, seal(tensors, meta), path, force=True)
    for _, old in list_checkpoints(path.parent)[: -run.cfg.keep_last]:
        old.unlink(missing_ok=True)
    return path


def read_state(path: Path) -> dict[str, Any]:
    """The parts of a training state, as `m2l.train.state.restore` takes them.

    Raises:
        M2LError: unreadable, another format, a failed checksum, malformed fields.
    """
    tensors, meta = read_safetensors(path, GENERATOR_STATE_FORMAT, STATE_VERSION)
    optim: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            idx, _, name = key[len("optim.") :].partition(".")
            if not (idx.isascii() and idx.isdigit() and len(idx) < 10 and name):
                raise M2LError(f"{path}: malformed optimiser tensor name {key[:40]!r}")
            optim.setdefault(int(idx), {})[name] = value
    return {
        "path": str(path),
        "step": meta_int(path, meta, "step", 0, 1 << 62),
        "train_config": gen_train_config_from_dict(meta_json(path, meta, "train_config"), str(path)),
        "generator_config": meta_json(path, meta, "generator_config"),
        "param_groups": meta_json(path, meta, "param_groups", list),
        "ema_updates": meta_int(path, meta, "ema_updates", 0, 1 << 62),
        "model": {k[6:]: v for k, v in tensors.items() if k.startswith("model.")},
        "ema": {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")},
        "optim": optim,
        "scaler": {},
        "rng": None,
    }


def start_run(
    folder: Path, data: LatentSplit, gcfg: GeneratorConfig, cfg: GenTrainConfig, device: torch.device
) -> Run:
    """A new run on `device`, or the newest valid state of the run in `folder` restored into it."""
    torch.manual_seed(cfg.seed)
    model = Generator(gcfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run = Run(folder, cfg, data, model, EMA(model, cfg.ema_decay), optimizer, device)
    for _, path in reversed(list_checkpoints(folder / "checkpoints")):
        try:
            parts = read_state(path)
        except M2LError as err:  # a damaged state (e.g. a disk that failed): the one before it
            warnings.warn(f"{err}; trying an older checkpoint", stacklevel=2)
            continue
        stored = generator_config_from_dict(parts["generator_config"], str(path))
        if stored != gcfg:
            raise M2LError(f"{path}: a state of another generator config")
        parts["param_groups"] = [{**group, "lr": cfg.lr} for group in parts["param_groups"]]
        restore(parts, model=model, ema=run.ema, optimizer=optimizer, scaler=None)
        run.step = parts["step"]
        break
    return run


def train_step(run: Run) -> float:
    """One optimiser step on the batch of `run.step`; returns its loss."""
    generator = step_generator(run.cfg.seed, "train", run.step)
    x0, label = run.data.batch(run.data.train, run.cfg.batch_size, generator)  # [B, D, T], [B]
    mask = context_masks(x0.shape[0], x0.shape[-1], generator, run.cfg.context_mix)  # [B, T]
    x0, mask, label = on_device(run.device, x0, mask, label)
    for group in run.optimizer.param_groups:
        group["lr"] = lr_at(run.step, run.cfg)
    with autocast(run.cfg, run.device):
        loss = generator_loss(run.model, x0, generator, mask, label, run.cfg.label_dropout)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.optimizer.step()
    run.ema.update(run.model)
    run.step += 1
    return float(loss.detach())


def generator_loss(
    model: Generator,
    x0: torch.Tensor,
    generator: torch.Generator,
    mask: torch.Tensor | None = None,
    label: torch.Tensor | None = None,
    label_dropout: float = 0.0,
) -> torch.Tensor:
    """The training loss of `model`'s objective: `flow_loss` or `edm_loss` (same arguments: x0
    [B, D, T], mask [B, T], label [B]); a scalar."""
    loss = edm_loss if model.cfg.objective == "edm" else flow_loss
    return loss(model, x0, generator, mask, label, label_dropout)


def autocast(cfg: GenTrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """`torch.autocast` to bfloat16 on `device` with precision "bf16", else nothing."""
    if cfg.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def on_device(device: torch.device, *tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """`tensors` moved to `device` (None stays None)."""
    return tuple(None if t is None else t.to(device) for t in tensors)


@torch.no_grad()
def validation_loss(run: Run) -> float:
    """The loss of the EMA weights on the fixed validation batches (labels kept)."""
    model = Generator(run.model.cfg).to(run.device)
    model.load_state_dict(run.ema.state)
    total = 0.0
    for number in range(run.cfg.val_batches):
        generator = step_generator(run.cfg.seed, "val", number)
        x0, label = run.data.batch(run.data.val, run.cfg.batch_size, generator)
        mask = context_masks(x0.shape[0], x0.shape[-1], generator, run.cfg.context_mix)
        x0, mask, label = on_device(run.device, x0, mask, label)
        with autocast(run.cfg, run.device):
            total += float(generator_loss(model, x0, generator, mask, label))
    return total / run.cfg.val_batches


def export(run: Run) -> Path:
    """Write the EMA weights as `RUN/generator.safetensors` (float32, replacing the last)."""
    return save_generator(
        run.folder / RUN_GENERATOR_NAME,
        run.ema.state,
        run.model.cfg,
        labels=run.data.labels,
        stats=run.data.stats,
        codec_id=run.data.codec_id,
        codec_source=run.data.codec_source,
        force=True,
        extra={"step": run.step},
    )


@contextlib.contextmanager
def stop_requests(run: Run) -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM set `run.stop` (the loop saves and returns)."""

    def handler(signum: int, _frame: object) -> None:
        run.stop = signal.Signals(signum).name

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def log(run: Run, record: dict[str, Any]) -> None:
    """Append one line to `RUN/log.jsonl` (with the time, as the codec trainer's log)."""
    with (run.folder / "log.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({**record, "time": time.time()}) + "\n")


def train_loop(run: Run) -> dict[str, Any]:
    """Train until `cfg.steps` or a stop request; returns {"step", "loss", "val_loss", "stopped"}."""
    cfg, summary = run.cfg, {"loss": None, "val_loss": None, "stopped": ""}
    with stop_requests(run):
        while run.step < cfg.steps and not run.stop:
            summary["loss"] = train_step(run)
            if run.step % cfg.log_every == 0:
                log(run, {"step": run.step, "loss": summary["loss"], "lr": lr_at(run.step - 1, cfg)})
            if run.step % cfg.val_every == 0 or run.step == cfg.steps:
                summary["val_loss"] = validation_loss(run)
                log(run, {"step": run.step, "val_loss": summary["val_loss"], "split": "val"})
            if run.step % cfg.ckpt_every == 0 or run.step == cfg.steps or run.stop:
                save_state(run)
                export(run)
    return {**summary, "step": run.step, "stopped": run.stop}


def train_generator(
    dataset: str | Path,
    out: str | Path,
    gcfg: GeneratorConfig,
    cfg: GenTrainConfig,
    *,
    change_config: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    """Train (or resume) a generator on `dataset` in the run folder `out`.

    Args:
        dataset: a packed latent dataset or a folder of `.m2l` files.
        out: the run folder.
        gcfg: the network (its `num_classes` is set from the label column's classes).
        cfg: the training settings.
        change_config: go on with a training config or a dataset other than the run's.
        device: "cpu", "cuda"...; the best available when None.

    Returns:
        {"step", "loss", "val_loss", "stopped"} of the last step.
    """
    data = LatentSplit(dataset, gcfg.frames, cfg.label_column, cfg.val_share)
    gcfg = dataclasses.replace(gcfg, num_classes=len(data.labels), latent_dim=data.stats.latent_dim)
    folder = Path(out)
    lock = RunLock(folder)
    lock.acquire()
    try:
        check_run_config(folder, run_config(gcfg, cfg, data.identity), change_config)
        run = start_run(folder, data, gcfg, cfg, pick_device(device))
        return train_loop(run)
    finally:
        lock.release()
