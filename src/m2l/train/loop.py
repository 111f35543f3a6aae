"""The training loop: one process or many (torchrun), resumable, observable.

Run directory layout:
    .lock                  held by the running trainer (pid, host; see m2l.train.run_folder)
    config.json            resolved training config (a valid CONFIG for `m2l train`)
    data_index.json        cached file index (train / validation split, unreadable files)
    log.jsonl              one JSON object per logged step and per validation
    checkpoints/step-*.safetensors   the last `keep_last` training states
    checkpoints/best.safetensors     the state with the lowest validation mel distance (v2: at sigma_cond 0)
    val/step-*/            reconstructions (wav) and spectrograms (png) of a few validation crops
    tb/                    TensorBoard scalars (when the tensorboard package is installed)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from m2l.audio.spectral import num_samples
from m2l.cli.args import check_device
from m2l.config import config_hash, resolve_precision
from m2l.errors import M2LError
from m2l.files import write_text
from m2l.formats import list_checkpoints, step_path
from m2l.loading import load_model
from m2l.models import create
from m2l.train.config import TrainConfig, model_config, train_config_to_dict
from m2l.train.data import CropDataset, Source, StepSampler, build_index, make_loader, validation_crops
from m2l.train.objective import ConsistencyObjective, sample_seeds
from m2l.train.run_folder import RunLock, best_record, check_run, guarded_start, newest_state
from m2l.train.schedule import lr_at
from m2l.train.state import EMA, restore, save_state
from m2l.train.validate import Validator


@dataclass
class DistributedContext:
    """Where this process stands in a torchrun job (rank, world size, local GPU) and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None) -> DistributedContext:
    """Join the torchrun process group when launched by torchrun (nccl on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cpu":
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return DistributedContext(rank, world, local, dev)


def prepare_run_dir(run_dir: Path, cfg: TrainConfig, is_main: bool) -> None:
    """Record the config in the run folder, the last step of a start (it was checked against
    the folder by `m2l.train.run_folder.check_run`, so a failed start leaves no config.json)."""
    path = run_dir / "config.json"
    if is_main:
        write_text(path, json.dumps(train_config_to_dict(cfg), indent=1), force=True)


class Trainer:
    """Builds everything from a config and runs `train()`; see the module docstring."""

    def __init__(
        self,
        cfg: TrainConfig,
        sources: list[Source],
        run_dir: Path,
        *,
        val_sources: list[Source] | None = None,
        device: str | None = None,
        show_progress: bool = True,
        extend: bool = False,
    ) -> None:
        """Check the run folder, lock it, build (and resume) everything, then record the config.

        Args:
            cfg: the training config.
            sources: the training data folders.
            run_dir: the run folder; an existing run is resumed (its config must match `cfg`).
            val_sources: validation folders (default: files held out of `sources`).
            device: cpu, cuda, cuda:N, mps (default: cuda when available).
            show_progress: show a progress bar.
            extend: a larger `cfg.steps` than the run's extends it (see `m2l.train.schedule`).

        Raises:
            M2LError: bad config, device, data or run folder (nothing is written then), or
                another trainer holds the folder's lock.
        """
        check_device(device)
        self.dist = setup_distributed(device)
        # checked before any write; fp16 trains with a gradient scaler
        self.autocast = resolve_precision(cfg.precision, self.dist.device, training=True)
        use_scaler = self.autocast == torch.float16
        self.run_dir = Path(run_dir)
        plan = check_run(self.run_dir, cfg, extend=extend)
        self.cfg = plan.cfg
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.show_progress = show_progress
        self.lock = RunLock(self.run_dir) if self.dist.main else None
        if self.lock is not None:  # released by train(), close(), or at the latest at exit
            weakref.finalize(self, self.lock.release)
        with guarded_start(self.run_dir, self.lock):
            self._build_state(use_scaler)
            self._resume()
            self.cfg = plan.resolve(self.step, self.run_dir, say=self.dist.main)
            self._build_objective()
            self._cpu_base = (self.counters.get("cpu_s") or 0.0) - time.process_time()
            self.index = self._index(sources, val_sources)
            self.counters["unreadable"] = max(self.counters["unreadable"], len(self.index["unreadable"]))
            self._dataset().check_audible([src.root for src in sources])
            self.validator = Validator(self, self._val_set()) if self.dist.main else None
            self.stop_signal: str | None = None
            prepare_run_dir(self.run_dir, self.cfg, self.dist.main)

    def close(self) -> None:
        """Release the run folder's lock (train() does at its end; safe to call again)."""
        if self.lock is not None:
            self.lock.release()

    # ------------------------------------------------------------------ building
    def _build_state(self, use_scaler: bool) -> None:
        """Model, grad scaler, optimiser and EMA, freshly initialised from `cfg.seed`."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.model = self.build_model()
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_scaler) if use_scaler else None
        self.optimizer = torch.optim.RAdam(
            self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
        )
        self.ema = EMA(self.model, cfg.ema_decay)
        self.step = 0
        self.counters: dict[str, Any] = {"nonfinite": 0, "unreadable": 0, "best_mel": None, "cpu_s": 0.0}

    def _build_objective(self) -> None:
        """The training objective (with the resolved config), wrapped for DDP and compiled."""
        self.objective: nn.Module = ConsistencyObjective(self.model, self.cfg, self.autocast)
        if self.dist.world > 1:
            ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.objective = nn.parallel.DistributedDataParallel(self.objective, device_ids=ids)
        if self.cfg.compile:
            self.objective = torch.compile(self.objective)

    def build_model(self) -> nn.Module:
        """A fresh model of the run's preset (and `model_set`) on the run's device (also the
        validator's copy)."""
        config = model_config(self.cfg)
        model = create(config)
        need = model.required_crop_frames
        if need is not None and self.cfg.crop_frames != need:
            raise M2LError(
                f"{config.name} trains on {model.sigma_groups} chunks of {need // model.sigma_groups} "
                f"frames: set crop_frames={need} (the *-v2 training presets do)"
            )
        model = model.to(self.dist.device)
        if self.cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _index(self, sources: list[Source], val_sources: list[Source] | None) -> dict:
        cache = self.run_dir / "data_index.json"
        if self.dist.main:
            index = build_index(sources, cache, val_sources=val_sources, val_fraction=self.cfg.val_fraction)
        if self.dist.world > 1:
            dist.barrier()
        if not self.dist.main:
            index = build_index(sources, cache, val_sources=val_sources, val_fraction=self.cfg.val_fraction)
        return index

    def _val_set(self) -> torch.Tensor:
        spectral = self.model.cfg.spectral
        seconds = max(self.cfg.val_seconds, self.crop_samples() / spectral.sample_rate)  # loss needs a crop
        return validation_crops(
            self.index["val"],
            items=self.cfg.val_items,
            seconds=seconds,
            sample_rate=spectral.sample_rate,
            channels=self.model.audio_channels,
            seed=self.cfg.seed,
        )

    def _dataset(self) -> CropDataset:
        return CropDataset(
            self.index["train"],
            self.index["weights"],
            crop_samples=self.crop_samples(),
            sample_rate=self.model.cfg.spectral.sample_rate,
            channels=self.model.audio_channels,
            seed=self.cfg.seed,
            min_rms=self.cfg.min_rms,
        )

    def crop_samples(self) -> int:
        return num_samples(self.cfg.crop_frames, self.model.cfg.spectral)

    def _resume(self) -> None:
        """Restore the newest valid checkpoint (see `m2l.train.run_folder.newest_state`); the
        best score comes from the best checkpoint itself, which only a better model replaces."""
        parts = newest_state(self.ckpt_dir, main=self.dist.main)
        if parts is not None:
            restore(parts, model=self.model, ema=self.ema, optimizer=self.optimizer, scaler=self.scaler)
            self.step = parts["step"]
            self.counters.update(parts["counters"])
            if self.dist.main:
                print(f"resuming {self.run_dir} from step {self.step}", flush=True)
        elif self.cfg.init:
            self._initialise_from(self.cfg.init)
        if self.dist.main:
            self.counters.update(best_record(self.ckpt_dir))

    def _initialise_from(self, source: str) -> None:
        """Start from the weights of a model source (fine-tuning): model and EMA, same preset.

        Raises:
            M2LError: the source cannot be loaded or holds another model preset.
        """
        loaded, model_id = load_model(source)
        if config_hash(loaded.cfg) != config_hash(self.model.cfg):
            have, want = loaded.cfg.name, self.model.cfg.name
            raise M2LError(f"init={source}: is a {have} model, the run trains {want}")
        self.model.load_state_dict(loaded.state_dict())
        self.ema = EMA(self.model, self.cfg.ema_decay)
        if self.dist.main:
            print(f"starting {self.run_dir} from the weights of {model_id}", flush=True)

    # ------------------------------------------------------------------ one step
    def train_step(self, audio: torch.Tensor) -> dict[str, float]:
        """One optimiser step on this rank's share of the global batch."""
        cfg, d = self.cfg, self.dist
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        local = audio.shape[0]
        seeds = sample_seeds(cfg.seed, self.step, d.rank * local, local)
        loss = self.objective(audio.to(d.device, non_blocking=True), seeds, self.step).mean()
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        stats = torch.stack([loss.detach().float(), torch.isfinite(loss).float()])
        if d.world > 1:
            dist.all_reduce(stats)
            stats = stats / d.world
        finite = bool(stats[1] == 1.0)
        grad_norm = float("nan")
        if finite:
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            if cfg.grad_clip > 0:
                grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.ema.update(self.model)
        self.step += 1
        terms = self.objective_terms()
        return {"loss": float(stats[0]), "finite": finite, "lr": lr, "grad_norm": grad_norm, **terms}

    def objective_terms(self) -> dict[str, float]:
        """This rank's loss terms and teacher gap of the last step (for the log)."""
        objective = self.objective
        for attr in ("_orig_mod", "module"):  # torch.compile, then DDP wrappers
            objective = getattr(objective, attr, objective)
        return dict(objective.last_terms)

    # ------------------------------------------------------------------ the loop
    def train(self, until: int | None = None) -> int:
        """Train until cfg.steps, step `until` or a signal (SIGINT/SIGTERM), saving a checkpoint
        at the end; returns the step reached. The run folder's lock is released at the end."""
        if self.lock is not None:
            self.lock.acquire()
        try:
            return self._train(until)
        finally:
            self.close()

    def _train(self, until: int | None) -> int:
        cfg = self.cfg
        stop_at = cfg.steps if until is None else min(until, cfg.steps)
        if self.step >= stop_at:
            if self.dist.main:
                more = " (--set steps=N --extend trains it further)" if self.step >= cfg.steps else ""
                print(f"{self.run_dir}: already trained for {self.step} steps{more}", flush=True)
            return self.step
        dataset = self._dataset()
        sampler = StepSampler(cfg.batch_size, self.dist.rank, self.dist.world, self.step, stop_at)
        loader = make_loader(dataset, sampler, cfg.workers)
        logger = Logger(self.run_dir, cfg, self.dist.main)
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (self.dist.main and self.show_progress),
            unit="step",
            dynamic_ncols=True,
        )
        if self.step == 0 and self.dist.main:  # the untrained baseline of the validation curve
            logger.log({"step": 0, "split": "val", **self.validator.run(0)})
        previous = _install_signal_handlers(self)
        consecutive, tick = 0, (time.perf_counter(), self.step)
        try:
            for audio, unreadable in loader:
                self.counters["unreadable"] += int(unreadable.sum())
                out = self.train_step(audio)
                consecutive = self._count_nonfinite(out["finite"], consecutive)
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    tick = self._log_step(logger, bar, out, tick)
                self._periodic(logger)
                if self._should_stop():
                    break
        finally:
            bar.close()
            _restore_signal_handlers(previous)
        if self.stop_signal or self.step == stop_at:
            self.save(self.step)
        if self.stop_signal and self.dist.main:
            print(
                f"stopped by {self.stop_signal} at step {self.step}; checkpoint saved in "
                f"{self.ckpt_dir} (run the same command to resume)",
                flush=True,
            )
        logger.close()
        return self.step

    def _count_nonfinite(self, finite: bool, consecutive: int) -> int:
        """Steps in a row whose loss was not finite (0 after a finite one); stops the run with a
        one-line error after `max_nonfinite` of them."""
        if finite:
            return 0
        self.counters["nonfinite"] += 1
        if consecutive + 1 >= self.cfg.max_nonfinite:
            raise M2LError(
                f"loss was not finite for {consecutive + 1} steps in a row (step "
                f"{self.step}); lower lr or check the data"
            )
        return consecutive + 1

    def _log_step(self, logger: Logger, bar: tqdm, out: dict, tick: tuple[float, int]) -> tuple[float, int]:
        """Log the step's losses, counters and rates since the last log `tick` (time, step);
        returns the new tick."""
        now = time.perf_counter()
        rate = (self.step - tick[1]) / max(now - tick[0], 1e-9)
        bar.set_postfix(loss=f"{out['loss']:.4g}", lr=f"{out['lr']:.2e}")
        audio_s = self.cfg.batch_size * self.crop_samples() / self.model.cfg.spectral.sample_rate
        logger.log(
            {
                **self.counters,
                **{k: v for k, v in out.items() if k != "finite"},
                "step": self.step,
                "steps_per_s": rate,
                "cpu_s": self.cpu_seconds(),
                "audio_s_per_s": rate * audio_s,
            }
        )
        return now, self.step

    def cpu_seconds(self) -> float:
        """CPU seconds this run's training process has used, over all its resumptions."""
        return self._cpu_base + time.process_time()

    def _periodic(self, logger: Logger) -> None:
        cfg = self.cfg
        if self.step % cfg.val_every == 0 or self.step == cfg.steps:
            if self.dist.main:
                metrics = self.validator.run(self.step)
                logger.log({"step": self.step, "split": "val", **metrics, "cpu_s": self.cpu_seconds()})
                best = self.counters.get("best_mel")
                if best is None or metrics["select"] < best:
                    self.counters["best_mel"] = metrics["select"]
                    self.counters["best_step"] = self.step
                    self._save_file(self.ckpt_dir / "best.safetensors")
            if self.dist.world > 1:
                dist.barrier()
        if self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
            self.save(self.step)

    def _should_stop(self) -> bool:
        flag = torch.tensor([1.0 if self.stop_signal else 0.0])
        if self.dist.world > 1:
            dist.all_reduce(flag)
        if flag.item() > 0 and not self.stop_signal:
            self.stop_signal = "a signal on another rank"
        return flag.item() > 0

    # ------------------------------------------------------------------ checkpoints
    def _save_file(self, path: Path) -> None:
        """Write the training state to `path`, replacing it (a resumed run may save a step again).

        Raises:
            M2LError: the write failed; nothing was replaced, and the message says which
                checkpoint the run would resume from.
        """
        self.counters["cpu_s"] = self.cpu_seconds()
        try:
            save_state(
                path,
                model=self.model,
                ema=self.ema,
                optimizer=self.optimizer,
                scaler=self.scaler,
                step=self.step,
                train_cfg=self.cfg,
                counters=self.counters,
            )
        except M2LError as err:
            found = list_checkpoints(self.ckpt_dir)
            kept = (
                f"the previous checkpoint {found[-1][1]} is kept"
                if found
                else "no checkpoint was written yet"
            )
            raise M2LError(f"{err}; checkpoint of step {self.step} not saved, {kept}") from None

    def save(self, step: int) -> None:
        """Write checkpoints/step-N (rank 0) and keep only the newest `keep_last`."""
        if self.dist.main:
            self._save_file(step_path(self.ckpt_dir, step))
            for _, old in list_checkpoints(self.ckpt_dir)[: -self.cfg.keep_last]:
                old.unlink(missing_ok=True)
        if self.dist.world > 1:
            dist.barrier()


class Logger:
    """JSONL log (+ TensorBoard scalars when available), rank 0 only."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, active: bool) -> None:
        self.active = active
        self.path = run_dir / "log.jsonl"
        self.tb = None
        if active and cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                self.tb = None

    def log(self, record: dict[str, Any]) -> None:
        if not self.active:
            return
        record = {**record, "time": time.time()}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            prefix = "val/" if record.get("split") == "val" else "train/"
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("step", "time"):
                    self.tb.add_scalar(prefix + key, value, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _install_signal_handlers(trainer: Trainer) -> dict:
    def handler(signum: int, _frame: object) -> None:
        trainer.stop_signal = signal.Signals(signum).name

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signal_handlers(previous: dict) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)
