"""Training and evaluation on device-resident tensors.

AdamW with linear warm-up and cosine decay (per step), label smoothing, gradient clipping, bf16
autocast as ``[train] precision`` says (on CUDA by default). All randomness (initialization,
batch order, augmentation, dropout) derives from one seed, and the whole training state is saved
(:mod:`explore.engine.trainstate`) when ``state_path`` is given, once a second of training has
passed
(``[train] state_interval``) and whenever training stops early, so an interrupted run continues
from its last saved epoch and, on CPU, ends with exactly the accuracy of an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from explore.config import TrainSettings
from explore.engine.data import Dataset
from explore.engine.device import autocast, synchronize
from explore.engine.locks import SharedHold
from explore.engine.stepgraphs import CaptureRefused, StepGraphs
from explore.engine.trainstate import load_state, save_state

__all__ = ["EpochResult", "NonFiniteLoss", "TrainResult", "compile_for_inference",
           "compile_for_trial", "evaluate", "train_model"]

log = logging.getLogger(__name__)

EVAL_BATCH = 1024
# Seconds of training between two looks at whether a measurement waits for the machine lock
# (one non-blocking flock): an epoch of any length keeps a measurement waiting about this long.
PAUSE_CHECK_S = 0.2


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    accuracy: float  # on the evaluation split
    loss: float  # mean training loss of the epoch
    seconds: float  # training time of the epoch (evaluation excluded)
    # The training state was saved right after this epoch ([train] state_interval); not part
    # of the stored history.
    saved: bool = field(default=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "accuracy": self.accuracy, "loss": self.loss,
                "seconds": round(self.seconds, 4)}


@dataclass
class TrainResult:
    accuracy: float  # after the last epoch
    history: list[EpochResult] = field(default_factory=list)
    train_seconds: float = 0.0  # summed over epochs, including those before a resume
    resumed_from: int = 0  # epochs restored from a saved state
    graphed: bool = False  # each step a CUDA graph replay ([train] cuda_graph)
    graph_seconds: float = 0.0  # warming up and capturing those graphs (not in train_seconds)
    lock_paused_seconds: float = 0.0  # mid-epoch pauses for measurements (not in train_seconds)


def _lr_lambda(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms and position embeddings."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "pos_embed" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _augment(x: torch.Tensor, gen: torch.Generator, flip: bool, pad: int) -> torch.Tensor:
    """Random crop with zero padding (and horizontal flip), vectorized over the batch."""
    B, _, H, W = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (B,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(H, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(W, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(B, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols]  # (B, H, W, C)
    out = out.permute(0, 3, 1, 2)  # (B, C, H, W)
    if flip:
        mask = (torch.rand(B, generator=gen) < 0.5).to(x.device)
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out.contiguous()


def _train_images(data: Dataset, idx: torch.Tensor, gen: torch.Generator, augment: bool
                  ) -> torch.Tensor:
    """The batch ``idx`` of the training images, augmented when ``augment``."""
    x = data.train_x[idx]
    return _augment(x, gen, data.augment_flip, pad=max(1, x.shape[-1] // 8)) if augment else x


def _train_step(model: nn.Module, net: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
                settings: TrainSettings, optimizer: torch.optim.Optimizer,
                loss_sum: torch.Tensor, *, graphed: bool = False) -> None:
    """Forward, loss, backward, clipping and the AdamW update of one batch; adds the batch's
    summed loss to ``loss_sum``. ``graphed``: as captured (:mod:`explore.engine.stepgraphs`): the
    gradients are zeroed in place (the graph's buffers) and autocast caches no casts."""
    with autocast(xb.device, settings.precision, cache=not graphed):
        loss = F.cross_entropy(net(xb), yb, label_smoothing=settings.label_smoothing)
    optimizer.zero_grad(set_to_none=not graphed)
    loss.backward()
    if settings.grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    optimizer.step()
    loss_sum += loss.detach() * len(yb)


def _train_epoch(model: nn.Module, net: nn.Module, data: Dataset, settings: TrainSettings,
                 optimizer: torch.optim.Optimizer, scheduler: Any, gen: torch.Generator,
                 augment: bool, graphs: StepGraphs | None = None,
                 hold: SharedHold | None = None) -> tuple[float, float]:
    """One pass over the training split in a fresh random order; returns the mean loss and
    the seconds it stood aside for a measurement (``hold``: the machine lock's shared side,
    checked every :data:`PAUSE_CHECK_S`). With ``graphs``, each step is one replay of the
    captured step of its batch size."""
    device = data.train_x.device
    n = len(data.train_y)
    perm = torch.randperm(n, generator=gen).to(device)
    loss_sum = torch.zeros((), device=device) if graphs is None else graphs.loss_sum.zero_()
    paused = 0.0
    check_at = time.perf_counter() + PAUSE_CHECK_S if hold is not None else math.inf
    # On a GPU the queued steps finish before the measurement starts.
    drain = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    for start in range(0, n, settings.batch_size):
        idx = perm[start:start + settings.batch_size]
        if graphs is not None:
            def fill(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor = idx) -> None:
                if augment:
                    x.copy_(_train_images(data, idx, gen, augment))
                else:  # gathered straight into the graph's buffer
                    torch.index_select(data.train_x, 0, idx, out=x)
                torch.index_select(data.train_y, 0, idx, out=y)

            graphs.run(fill, len(idx))
        else:
            _train_step(model, net, _train_images(data, idx, gen, augment), data.train_y[idx],
                        settings, optimizer, loss_sum)
        scheduler.step()
        if hold is not None and time.perf_counter() >= check_at:
            paused += hold.pause_if_wanted(drain)
            check_at = time.perf_counter() + PAUSE_CHECK_S
    return loss_sum.item() / n, paused


def _step_graphs(model: nn.Module, net: nn.Module, data: Dataset, settings: TrainSettings,
                 optimizer: torch.optim.Optimizer, capture: bool) -> StepGraphs | None:
    """The training step captured per batch size (``[train] cuda_graph``), or None where it
    synchronizes with the host (the trial then trains eagerly)."""
    def step(xb: torch.Tensor, yb: torch.Tensor, loss_sum: torch.Tensor) -> None:
        _train_step(model, net, xb, yb, settings, optimizer, loss_sum, graphed=True)

    try:
        return StepGraphs(step, model, optimizer,
                          _batch_sizes(len(data.train_y), settings.batch_size),
                          data.train_x, data.train_y, capture=capture)
    except CaptureRefused as exc:
        log.warning("training eagerly: %s", str(exc))  # a string: no frames kept alive
        return None


def _batch_sizes(n: int, batch: int) -> list[int]:
    """The batch sizes a pass over ``n`` items in batches of ``batch`` runs."""
    return sorted({min(n, batch), n % batch} - {0})


def compile_for_trial(model: nn.Module, data: Dataset, settings: TrainSettings,
                      measure_batch: int) -> tuple[nn.Module, float]:
    """``torch.compile(model)`` with every graph the trial will run compiled now.

    Inference at the measurement's batch and the evaluation chunks, training (forward and
    backward) at the batch size and the epoch's last, smaller batch: compilation happens here,
    so it is counted in neither the throughput nor the training time. The weights, gradients
    and random state are as they were: the trial trains exactly as it would have.

    Returns:
        The compiled module (it shares ``model``'s parameters) and the seconds compiling took.
    """
    device = data.train_x.device
    net = _compile(model, settings.compile_mode)
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    was_training = model.training
    started = time.perf_counter()
    try:
        sizes = sorted({measure_batch, *_batch_sizes(len(data.eval_y), EVAL_BATCH)})
        _run_inference(net, [data.eval_x[:1].expand(b, *data.eval_x.shape[1:]).contiguous()
                             for b in sizes], device, settings.precision)
        net.train()
        for b in _batch_sizes(len(data.train_y), settings.batch_size):
            with autocast(device, settings.precision):
                out = net(data.train_x[:b])
            out.float().sum().backward()
        synchronize(device)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
    return net, time.perf_counter() - started


def _compile(model: nn.Module, mode: str) -> nn.Module:
    # torch's C++ toolchain probe warns about a missing CUDA runtime on every CPU-only machine.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return cast(nn.Module, torch.compile(model, mode=None if mode == "default" else mode,
                                         dynamic=False))


def compile_for_inference(model: nn.Module, image_shape: tuple[int, int, int], batch: int,
                          device: torch.device, mode: str = "default", precision: str = "auto"
                          ) -> tuple[nn.Module, float]:
    """``torch.compile(model)`` with its inference graph at ``batch`` built (``model bench``)."""
    net = _compile(model, mode)
    started = time.perf_counter()
    _run_inference(net, [torch.zeros((batch, *image_shape), device=device)], device, precision)
    synchronize(device)
    return net, time.perf_counter() - started


def _run_inference(net: nn.Module, inputs: list[torch.Tensor], device: torch.device,
                   precision: str) -> None:
    """One eval-mode pass per input, as measured and evaluated. The inputs must be made outside
    inference mode, as the measurement's and the evaluation's are: an inference tensor would
    compile a graph of its own."""
    net.eval()
    with torch.inference_mode(), autocast(device, precision):
        for x in inputs:
            net(x)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str = "auto"
             ) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` (``precision``: as it was trained)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    with autocast(x.device, precision):
        for i in range(0, len(x), EVAL_BATCH):
            correct += (model(x[i:i + EVAL_BATCH]).argmax(dim=1) == y[i:i + EVAL_BATCH]).sum()
    model.train(was_training)
    return correct.item() / max(1, len(y))


def train_model(
    model: nn.Module,
    data: Dataset,
    settings: TrainSettings,
    seed: int,
    *,
    augment: bool = False,
    on_epoch: Callable[[EpochResult, list[EpochResult]], None] | None = None,
    state_path: Path | None = None,
    extra_state: dict[str, Any] | None = None,
    epoch_guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
    net: nn.Module | None = None,
    step_graphs: bool | None = None,
    save_at: Collection[int] = (),
) -> TrainResult:
    """Train ``model`` on ``data.train_*`` and evaluate on ``data.eval_*`` after every epoch.

    Args:
        model: Already on ``data``'s device, initialized from ``seed``.
        settings: Optimizer, schedule and loss settings.
        seed: Seeds batch order, augmentation and dropout.
        augment: Random crops (and flips where the dataset allows) on the training batches.
        on_epoch: Called after each epoch with its result and the history so far; it may raise
            to stop training (pruning, interruption): the state of that epoch is saved before
            the exception goes on (``record.saved`` says whether it already was).
        state_path: Where to save (and look for) the training state: after an epoch once
            ``settings.state_interval`` seconds have passed since the last save, after the last
            epoch and the epochs in ``save_at``, and when ``on_epoch`` raises.
        extra_state: Plain values stored with the state (e.g. the measured throughput).
        epoch_guard: Context held while an epoch trains (the machine lock's shared side).
        net: What runs the batches, when not ``model`` itself: its compiled form
            (:func:`compile_for_trial`). States and checkpoints always hold ``model``'s weights.
        step_graphs: Run each step as a captured CUDA graph (:mod:`explore.engine.stepgraphs`).
            Default: on CUDA where ``settings.cuda_graph`` says so and ``net`` is not compiled.
            True on another device runs the same steps on the graphs' buffers, uncaptured.
        save_at: Epochs whose state is always saved (the pruning rungs).

    Raises:
        NonFiniteLoss: the loss became NaN or infinite.
    """
    device = data.train_x.device
    net = model if net is None else net  # (a compiled module has no truth value)
    n = len(data.train_y)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    # The fused kernel updates all parameters in one call: on CPU ~4x faster than the default
    # per-tensor loop, which is ~5% of a step of the default model (docs/performance.md).
    optimizer = torch.optim.AdamW(_param_groups(model, settings.weight_decay), lr=settings.lr,
                                  fused=device.type in ("cpu", "cuda"))
    warmup = min(total, round(settings.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, max(1, warmup)))
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    result = TrainResult(accuracy=0.0)

    if state_path is not None and state_path.is_file():
        # On the CPU: the model and optimizer copy their parts to their device; the generator
        # states must stay CPU byte tensors.
        state = load_state(state_path) or {}
        if state and state["epoch"] <= settings.epochs:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            result.history = [EpochResult(**h) for h in state["history"]]
            result.train_seconds = float(state["train_seconds"])
            result.resumed_from = int(state["epoch"])
            result.accuracy = result.history[-1].accuracy if result.history else 0.0

    def save(epoch: int) -> None:  # the training state after ``epoch``
        assert state_path is not None
        save_state(state_path, {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "history": [h.to_dict() for h in result.history],
            "train_seconds": result.train_seconds,
            "extra": dict(extra_state or {}),
        })

    model.train()
    if step_graphs is None:
        step_graphs = (settings.cuda_graph and device.type == "cuda"
                       and not hasattr(net, "_orig_mod"))
    # Graphs are captured and replayed on the current device's streams: the model's GPU's.
    with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
        started = time.perf_counter()
        graphs = (_step_graphs(model, net, data, settings, optimizer, device.type == "cuda")
                  if step_graphs and result.resumed_from < settings.epochs else None)
        result.graphed = graphs is not None and graphs.capture
        result.graph_seconds = time.perf_counter() - started if graphs is not None else 0.0
        last_save = time.perf_counter()
        for epoch in range(result.resumed_from + 1, settings.epochs + 1):
            with epoch_guard() as hold:
                t0 = time.perf_counter()
                mean_loss, paused = _train_epoch(
                    model, net, data, settings, optimizer, scheduler, gen, augment, graphs,
                    hold if isinstance(hold, SharedHold) else None)
                seconds = time.perf_counter() - t0 - paused
                result.lock_paused_seconds += paused
                if not math.isfinite(mean_loss):
                    raise NonFiniteLoss(f"training loss became {mean_loss} in epoch {epoch}")
                accuracy = evaluate(net, data.eval_x, data.eval_y, settings.precision)
            result.accuracy = accuracy
            result.train_seconds += seconds
            due = state_path is not None and (
                epoch == settings.epochs or epoch in save_at
                or time.perf_counter() - last_save >= settings.state_interval)
            record = EpochResult(epoch, accuracy, mean_loss, seconds, saved=due)
            result.history.append(record)
            if due:
                save(epoch)
                last_save = time.perf_counter()
            if on_epoch is not None:
                try:
                    on_epoch(record, result.history)
                except BaseException:
                    if state_path is not None and not due:
                        save(epoch)  # stopping here: the next attempt starts after this epoch
                    raise
    return result
