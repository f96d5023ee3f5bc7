"""`cli.py train`: stacks -> a trained model in runs/<name>/ with its history, metrics and plots.

Reproducible: every epoch reseeds from (--seed, epoch), so the same data and seed give the same
metrics on CPU, and a run resumed from last.pt continues exactly as if it had never stopped.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.checkpoint import init_from_checkpoint, load_checkpoint, save_checkpoint
from models.head import HeadSettings
from models.network import EmotionNet, ModelSettings
from models.weights import hub_state, load_backbone_state, packaged_state, read_weights_file
from pipeline.checkpoints import checkpoint_errors, read_checkpoint
from pipeline.options import Option, option_table
from pipeline.plots import plot_curves
from pipeline.train.augment import augment_batch, normalise, to_unit
from pipeline.train.data import RunData, load_split, read_run_data
from pipeline.train.evaluate import write_evaluation
from pipeline.train.inference import autocast, predict_logits
from pipeline.train.metrics import confusion_matrix, summarise
from pipeline.train.parts import (
    TrainError,
    batch_order,
    class_weights,
    epoch_seed,
    lr_factor,
    make_optimizer,
    resolve_device,
    seed_everything,
    use_bf16,
)
from pipeline.train.settings import AugmentSettings, TrainConfig
from pipeline.train.soft_targets import SoftTargetError, vote_distributions
from stacks.atomic import atomic_write, atomic_write_text
from stacks.framing import training_margin
from stacks.settings import InputSettings

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ["epoch", "time_seconds", "train_acc", "train_loss", "val_acc", "val_loss", "learning_rate",
                   "val_uar", "val_macro_f1"]


class TrainInterrupted(Exception):
    """Ctrl-C: last.pt holds the last finished epoch; --resume continues from it.

    ``kept`` says what was kept without the advice, for callers that continue another way (the grid)."""

    def __init__(self, kept: str, advice: str = "") -> None:  # one argument: unpickled, the message whole
        super().__init__(f"{kept}: {advice}" if advice else kept)
        self.kept = kept


@dataclass
class LoopState:
    """What the loop carries from epoch to epoch (saved in last.pt)."""

    epoch: int = 0  # epochs finished
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    state: LoopState


def _better(monitor: str, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if monitor == "loss" else value > best


def _start_weights(model: EmotionNet, config: TrainConfig) -> tuple[str, InputSettings]:
    """Load the starting weights; returns a note for the log and the input normalisation they expect."""
    inputs = config.input
    with checkpoint_errors(TrainError):
        if config.init is not None:
            note, theirs = init_from_checkpoint(model, config.init)
            return note, replace(inputs, mean=theirs["mean"], std=theirs["std"])
        if config.weights is not None or config.pretrained:
            packaged = None if config.weights is not None else packaged_state(config.backbone)
            if config.weights is not None:
                state, origin = read_weights_file(config.weights), f"--weights {config.weights}"
            elif packaged is not None:
                state, origin = packaged[0], f"ImageNet weights in {packaged[1]}"
            else:
                state, origin = hub_state(config.backbone), "timm's pretrained weights"
            n = load_backbone_state(model.backbone, state, origin)
            cfg = model.backbone.pretrained_cfg  # ImageNet weights expect their own mean/std, grey = channel mean
            inputs = replace(inputs, mean=round(float(np.mean(cfg["mean"])), 4),
                             std=round(float(np.mean(cfg["std"])), 4))
            return f"backbone from {origin} ({n} tensors; first conv adapted)", inputs
    return "random initialisation", inputs


# Settings that may differ between a run and its --resume: they do not change what is computed.
RESUME_MAY_CHANGE = {"resume", "overwrite", "progress", "device", "threads", "compile", "epochs", "patience", "cache",
                     "runs_dir"}


def _changed_flags(then: dict, now: dict, keys: list[str]) -> list[str]:
    """The settings that differ, as the flags that set them (``--image-size 48 -> 32``, not the whole nested
    ``input`` dict); a field no flag sets is named by its key."""
    def at(data: Any, path: tuple[str, ...]) -> Any:
        for key in path:
            data = data.get(key) if isinstance(data, dict) else None
        return data

    def shown(opt: Option, value: Any) -> Any:
        return (not value) if opt.invert and isinstance(value, bool) else value  # --no-augment: True when given

    out = []
    for key in keys:
        options = [o for o in option_table(TrainConfig) if o.path and o.path[0] == key
                   and at(then, o.path) != at(now, o.path)]
        out += [f"{o.flag} {shown(o, at(then, o.path))!r} -> {shown(o, at(now, o.path))!r}" for o in options]
        old, new = then[key], now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):  # and the nested fields no flag sets
            flagged = {o.path[1] for o in options if len(o.path) == 2}
            out += [f"{key}.{k} {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new))
                    if k not in flagged and old.get(k) != new.get(k)]
        elif not options:
            out.append(f"{key} {old!r} -> {new!r}")
    return out


def _history_csv(history: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    return buf.getvalue()


class Trainer:
    """Owns the model, optimizer and schedule of one run; ``fit`` runs the epochs."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.run_dir = config.run_dir
        self._check_run_dir()
        self.device = resolve_device(config.device)
        self.bf16 = use_bf16(config.precision, self.device, config.backbone)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        try:
            self.data: RunData = read_run_data(config.data)
        except Exception as exc:
            raise TrainError(str(exc)) from exc
        try:
            head = HeadSettings(config.head_hidden, config.head_dropout, config.head_dropout_hidden)
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
        self.model_settings = ModelSettings(config.backbone, self.data.channels, tuple(self.data.classes), head,
                                            config.drop_path)
        self.resume_from = self._resume_checkpoint()
        if not self.resume_from:  # found before the stacks load (a minute on FER2013), not after
            for flag, path in (("--weights", config.weights), ("--init", config.init)):
                if path is not None and not Path(path).exists():
                    raise TrainError(f"{flag} {path}: no such file or run folder")
        if len(self.data.rows["train"]) < 2:
            raise TrainError("a single training stack cannot be trained on (BatchNorm needs batches of 2+)")
        cache_dir = config.data / ".cache" if config.cache == "disk" else None
        try:
            self.train_set = load_split(self.data, "train", config.input.image_size, cache_dir, config.progress)
            self.val_set = load_split(self.data, "val", config.input.image_size, cache_dir, config.progress)
        except Exception as exc:
            raise TrainError(str(exc)) from exc
        seed_everything(config.seed)
        self.model = EmotionNet(self.model_settings)
        if self.resume_from:
            self.start_note, self.inputs = "resumed", InputSettings(**self.resume_from["input"])
        else:
            self.start_note, self.inputs = _start_weights(self.model, config)
        self.model.to(self.device).to(memory_format=torch.channels_last)
        self.steps_per_epoch = len(batch_order(self.train_set.labels, config.batch_size, config.balance,
                                               torch.Generator().manual_seed(0)))
        try:
            self.optimizer = make_optimizer(self.model, config)
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(config, self.steps_per_epoch))
        try:  # soft: the vote distribution of every training stack, in the dataset's row order
            self.soft = (torch.from_numpy(vote_distributions(self.train_set.rows, self.data.classes))
                         if config.targets == "soft" else None)
        except SoftTargetError as exc:
            raise TrainError(str(exc)) from exc
        power = {"weights": 1.0, "sqrt": 0.5}.get(config.balance)
        weights = class_weights(self.train_set.class_counts(), power) if power else None
        self.loss_weights = None if weights is None else weights.to(self.device)
        self.state = LoopState()
        if self.resume_from:
            self._restore(self.resume_from)
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.tensorboard = None

    # -- run folder ---------------------------------------------------------------------------
    def _check_run_dir(self) -> None:
        last = self.run_dir / "last.pt"
        if self.config.resume and not last.is_file():
            raise TrainError(f"--resume: {last} does not exist; start the run without --resume")
        if not self.config.resume and last.is_file() and not self.config.overwrite:
            raise TrainError(f"{self.run_dir} already holds a run: --resume to continue it, --overwrite to "
                             "start it again, or choose another --name")
        if self.config.overwrite and self.run_dir.is_dir() and any(self.run_dir.iterdir()):
            if not any((self.run_dir / name).is_file() for name in ("config.json", "last.pt", "best.pt")):
                raise TrainError(f"--overwrite: {self.run_dir} holds files but is not a run folder; "
                                 "refusing to delete it, choose another --name")

    def _clear_run_dir(self) -> None:
        """--overwrite: the old run goes only once the new one has passed every check."""
        if self.config.overwrite and self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _resume_checkpoint(self) -> dict | None:
        if not self.config.resume:
            return None
        data = read_checkpoint(self.run_dir / "last.pt", TrainError)
        if not {"optimizer", "scheduler", "loop", "train", "input"} <= set(data):
            raise TrainError(f"--resume: {self.run_dir / 'last.pt'} lacks the training state (not a last.pt?)")
        saved = ModelSettings.from_dict(data["model"])
        if saved != self.model_settings:
            raise TrainError(f"--resume: {self.run_dir} was trained as {saved.backbone} on {saved.in_chans} channels "
                             f"and classes {list(saved.classes)}; this call asks for {self.model_settings.backbone}, "
                             f"{self.model_settings.in_chans} channels, {list(self.model_settings.classes)}")
        now, then = self.config.to_dict(), dict(data["train"])
        now["data"], then["data"] = (str(Path(x).resolve()) for x in (now["data"], then["data"]))
        # A run saved before a settings field existed holds that field's default, not a different setting.
        for key, settings in (("input", InputSettings), ("augment", AugmentSettings)):
            if isinstance(then.get(key), dict):
                then[key] = settings(**then[key]).to_dict()
        changed = sorted(k for k, v in then.items() if k not in RESUME_MAY_CHANGE and now.get(k) != v)
        if changed:
            flags = ", ".join(_changed_flags(then, now, changed))
            raise TrainError(f"--resume with different settings ({flags}): resume with the run's own settings "
                             f"(see {self.run_dir / 'config.json'}), or start a new --name")
        return data

    def _restore(self, data: dict) -> None:
        self.model.load_state_dict(data["state_dict"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.scheduler.load_state_dict(data["scheduler"])
        loop = data["loop"]
        # --patience may change on resume: an early stop is judged again with the new value.
        patience = self.config.patience
        stopped = loop["stopped_early"] and patience > 0 and loop["bad_epochs"] >= patience
        self.state = LoopState(epoch=loop["epoch"], best=loop["best"], best_epoch=loop["best_epoch"],
                               bad_epochs=loop["bad_epochs"], stopped_early=stopped, history=list(loop["history"]))

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    # -- checkpoints ----------------------------------------------------------------------------
    def _payload(self, full: bool) -> dict:
        payload = {
            "model": self.model_settings.to_dict(),
            "kind": "frame" if self.model_settings.in_chans == 1 else "stack",
            "input": self.inputs.to_dict(),
            "stack": self.data.stack.to_dict(),
            "framing": {"margin": training_margin(self.data.rows.get("train", []))},
            "train": self.config.to_dict(),
            "epoch": self.state.epoch,
            "metrics": self.state.history[-1] if self.state.history else {},
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
        }
        if full:
            payload.update({
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": {"scheme": "reseeded every epoch from (seed, epoch)", "seed": self.config.seed,
                        "torch": torch.get_rng_state()},
                "loop": {"epoch": self.state.epoch, "best": self.state.best, "best_epoch": self.state.best_epoch,
                         "bad_epochs": self.state.bad_epochs, "stopped_early": self.state.stopped_early,
                         "history": self.state.history},
            })
        return payload

    # -- the loop -------------------------------------------------------------------------------
    def train_epoch(self, epoch: int, max_batches: int | None = None) -> tuple[float, float, float]:
        """One epoch (or its first ``max_batches`` batches, for benchmarks).

        Returns (mean loss, accuracy, learning rate of the epoch's last step).
        """
        config = self.config
        seed = epoch_seed(config.seed, epoch)
        gen = seed_everything(seed)  # dropout, batch order and augmentation of this epoch
        batches = batch_order(self.train_set.labels, config.batch_size, config.balance, gen)[:max_batches]
        self.model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", unit="batch", leave=False,
                   disable=not config.progress, dynamic_ncols=True)
        for indices in bar:
            images, labels = self.train_set[indices]
            labels = labels.to(self.device)
            targets = labels if self.soft is None else self.soft[self.train_set.batch_order(indices)].to(self.device)
            x = augment_batch(to_unit(images, self.device), config.augment, gen)
            x = normalise(x, self.inputs.mean, self.inputs.std).contiguous(memory_format=torch.channels_last)
            with autocast(self.device, self.bf16):
                logits = self.forward(x).float()
            loss = F.cross_entropy(logits, targets, weight=self.loss_weights, label_smoothing=config.label_smoothing)
            if not torch.isfinite(loss):
                raise TrainError(f"the loss became {loss.item()} in epoch {epoch}: training diverged; lower --lr "
                                 f"(now {config.lr}) or raise --warmup-epochs")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad)
            self.optimizer.step()
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            n = len(labels)
            loss_sum += loss.item() * n
            correct += (logits.argmax(1) == labels).sum().item()
            seen += n
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
        bar.close()
        return loss_sum / max(1, seen), correct / max(1, seen), lr

    def fit(self) -> TrainResult:
        config, state = self.config, self.state
        self._clear_run_dir()
        self.tensorboard = self._tensorboard()
        atomic_write_text(self.run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")
        log.info(f"{config.backbone}: {self.data.channels} channels, {len(self.data.classes)} classes "
                 f"({', '.join(self.data.classes)}), {len(self.train_set)} train / {len(self.val_set)} val stacks "
                 f"at {self.inputs.image_size}px on {self.device} ({'bf16 autocast' if self.bf16 else 'fp32'}); "
                 f"{self.start_note}" + ("; targets: the vote distributions" if self.soft is not None else ""))
        if state.epoch >= config.epochs or state.stopped_early:
            log.info(f"{self.run_dir} already finished ({state.epoch} epochs); evaluating its best.pt")
        while state.epoch < config.epochs and not state.stopped_early:
            try:
                self._run_epoch(state.epoch + 1)
            except KeyboardInterrupt:
                if not (self.run_dir / "last.pt").is_file():
                    raise TrainInterrupted("interrupted in epoch 1, before any epoch finished",
                                           "nothing to resume, run the command again") from None
                saved = load_checkpoint(self.run_dir / "last.pt")["epoch"]
                raise TrainInterrupted(
                    f"interrupted in epoch {saved + 1}; {self.run_dir / 'last.pt'} holds epoch {saved}",
                    "continue with the same command and --resume") from None
        log.info(f"best {config.monitor} {state.best:.4f} at epoch {state.best_epoch}"
                 + (f" (stopped early after {config.patience} epochs without improvement)" if state.stopped_early
                    else ""))
        atomic_write(self.run_dir / "curves.png",
                     lambda tmp: plot_curves(state.history, tmp, f"{self.run_dir.name}: {config.backbone}"))
        if self.tensorboard is not None:
            self.tensorboard.close()
        best = read_checkpoint(self.run_dir / "best.pt", TrainError)
        self.model.load_state_dict(best["state_dict"])
        metrics = write_evaluation(self.model, self.val_set, best, "val", self.run_dir, self.device)
        return TrainResult(self.run_dir, metrics, state)

    def _run_epoch(self, epoch: int) -> None:
        """Train, validate, then save last.pt (and best.pt) atomically: an interruption keeps the previous."""
        config, state = self.config, self.state
        started = time.perf_counter()
        train_loss, train_acc, lr = self.train_epoch(epoch)
        logits, val_loss = predict_logits(self.model, self.val_set, self.inputs, self.device)
        val = summarise(confusion_matrix(self.val_set.labels, logits.argmax(1), len(self.data.classes)),
                        self.data.classes, val_loss)
        row = {"epoch": epoch, "time_seconds": round(time.perf_counter() - started, 2),
               "train_acc": round(train_acc, 5), "train_loss": round(train_loss, 5),
               "val_acc": round(val["accuracy"], 5), "val_loss": round(val_loss, 5),
               "learning_rate": lr, "val_uar": round(val["uar"], 5), "val_macro_f1": round(val["macro_f1"], 5)}
        value = val_loss if config.monitor == "loss" else val[config.monitor]
        improved = _better(config.monitor, value, state.best)
        state.history.append(row)
        state.epoch = epoch
        if improved:
            state.best, state.best_epoch, state.bad_epochs = value, epoch, 0
            save_checkpoint(self.run_dir / "best.pt", self._payload(full=False))
        else:
            state.bad_epochs += 1
            state.stopped_early = config.patience > 0 and state.bad_epochs >= config.patience
        save_checkpoint(self.run_dir / "last.pt", self._payload(full=True))
        atomic_write_text(self.run_dir / "history.csv", _history_csv(state.history))
        self._log_epoch(row, improved)

    def _log_epoch(self, row: dict, improved: bool) -> None:
        mark = " *" if improved else ""
        log.info(f"epoch {row['epoch']:>3}/{self.config.epochs}  {row['time_seconds']:7.1f}s  "
                 f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.3f}  "
                 f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.3f} uar {row['val_uar']:.3f}  "
                 f"lr {row['learning_rate']:.2e}{mark}")
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.tensorboard.add_scalar(key, value, row["epoch"])


def run_train(config: TrainConfig) -> TrainResult:
    return Trainer(config).fit()
