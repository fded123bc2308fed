"""The whole training step as CUDA graphs (``[train] cuda_graph``).

A trial of the default model on a GPU is bound by the host: an eager step (forward, loss,
backward, gradient clipping, AdamW) launches a few hundred small kernels one by one, and the GPU
waits for them (docs/performance.md, "Training speed", gives the measured step time). Here each
batch size an epoch runs (the batch, and the epoch's last, smaller one) is captured once as a
CUDA graph, and every step is one replay: the batch is gathered into the graph's input buffers,
the learning rate the scheduler set is written into the device tensor the graph's AdamW reads,
and the graph runs forward, backward, clipping and the update.

The math is the eager step's: the same kernels, the gradients accumulated into zeroed buffers
instead of fresh ones, AdamW's ``capturable`` form of the same fused update. Capture needs warm-up
steps, which change the weights and the optimizer's state; everything they touch (parameters,
buffers, optimizer state, random generators) is put back before the first real step, so a trial
trains from exactly the state it would have eagerly. A step that synchronizes with the host
cannot be captured: that is found out in the warm-up (under ``set_sync_debug_mode("error")``,
since a capture failing part-way breaks the process's CUDA random generator) and the trial then
trains eagerly.

``capture=False`` runs the same buffers, warm-up and restore without capturing (any device): the
tests check on the CPU that this trains exactly what the eager loop trains.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

__all__ = ["CaptureRefused", "StepGraphs"]

WARMUP_STEPS = 3  # eager steps per batch size before capture (autograd, cuBLAS and AdamW set up)

Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]  # (x, y, loss_sum)


class CaptureRefused(RuntimeError):
    """The training step cannot be captured (it synchronizes with the host, or capturing it
    failed otherwise)."""


class StepGraphs:
    """One captured training step per batch size.

    Args:
        step: Runs one training step on ``(x, y)`` and adds the batch's summed loss to
            ``loss_sum``; it must zero the gradients in place (``set_to_none=False``).
        model: The trained module (its parameters and buffers are restored after warm-up).
        optimizer: Its AdamW; while capturing, its groups read the learning rate from device
            tensors (``capturable``); afterwards they are as they were, so its state dict is
            the eager one's.
        sizes: The batch sizes to capture.
        x, y: Training inputs and labels; their first rows fill the buffers for warm-up.
        capture: False: replay means running ``step`` on the buffers (tests, any device).

    Raises:
        CaptureRefused: ``step`` synchronizes with the host, or capturing it failed otherwise;
            the model, optimizer and random state are as they were (capture runs nothing).
    """

    def __init__(self, step: Step, model: nn.Module, optimizer: torch.optim.Optimizer,
                 sizes: list[int], x: torch.Tensor, y: torch.Tensor, *, capture: bool = True
                 ) -> None:
        self.step = step
        self.optimizer = optimizer
        self.device = x.device
        self.capture = capture
        self.loss_sum = torch.zeros((), device=self.device)
        self.inputs = {b: (x[:b].clone(), y[:b].clone()) for b in sizes}
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.lrs = [torch.tensor(float(g["lr"]), device=self.device)
                    for g in optimizer.param_groups]
        # No gradient buffers are made here: the first warm-up step's backward makes them for
        # the parameters that get gradients, and a parameter that gets none keeps None, so that
        # AdamW skips it (no weight decay) as it does in eager steps.
        with _restored(model, optimizer, self.device), self._device_lrs():
            self._warm_up()
        if capture:
            with self._device_lrs():
                for b, (xb, yb) in self.inputs.items():
                    graph = torch.cuda.CUDAGraph()
                    try:
                        with torch.cuda.graph(graph):
                            step(xb, yb, self.loss_sum)
                    except RuntimeError as exc:  # nothing ran: the state is as restored
                        failure = str(exc)
                    else:
                        self.graphs[b] = graph
                        continue
                    self.graphs.clear()
                    raise CaptureRefused(f"capturing the training step failed: {failure}")
        self.loss_sum.zero_()

    def run(self, fill: Callable[[torch.Tensor, torch.Tensor], None], size: int) -> None:
        """One training step: ``fill(x, y)`` writes the batch into the buffers of ``size``."""
        for lr, group in zip(self.lrs, self.optimizer.param_groups, strict=True):
            lr.fill_(group["lr"])
        xb, yb = self.inputs[size]
        fill(xb, yb)
        if self.capture:
            self.graphs[size].replay()
        else:
            self.step(xb, yb, self.loss_sum)

    def _warm_up(self) -> None:
        on_side = self.capture  # capture requires its warm-up off the default stream
        side = torch.cuda.Stream(self.device) if on_side else None
        if side is not None:
            side.wait_stream(torch.cuda.current_stream(self.device))
        with warnings.catch_warnings():
            # AdamW warns when its capturable form steps outside a capture: these steps are.
            warnings.simplefilter("ignore")
            with torch.cuda.stream(side) if side is not None else nullcontext():
                for xb, yb in self.inputs.values():
                    for _ in range(WARMUP_STEPS - 1):
                        self.step(xb, yb, self.loss_sum)
                    with _sync_raises(on_side):
                        self.step(xb, yb, self.loss_sum)
        if side is not None:
            torch.cuda.current_stream(self.device).wait_stream(side)
            torch.cuda.synchronize(self.device)

    @contextmanager
    def _device_lrs(self) -> Iterator[None]:
        """The optimizer's groups read their learning rates from ``self.lrs`` (the capturable
        form where capturing), then are put back as they were."""
        groups = self.optimizer.param_groups
        before = [(g["lr"], g["capturable"]) for g in groups]
        for lr, group in zip(self.lrs, groups, strict=True):
            lr.fill_(group["lr"])
            group["lr"] = lr
            group["capturable"] = self.capture
        try:
            yield
        finally:
            for (lr_value, capturable), group in zip(before, groups, strict=True):
                group["lr"] = lr_value
                group["capturable"] = capturable


@contextmanager
def _sync_raises(active: bool) -> Iterator[None]:
    """Operations that synchronize with the host raise (CaptureRefused) inside the block."""
    if not active:
        yield
        return
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    failure = None
    try:
        yield
    except RuntimeError as exc:
        failure = str(exc)
    finally:
        torch.cuda.set_sync_debug_mode(before)
    if failure is not None:
        # Raised outside the handler: no reference to the failed step's frames (its autograd
        # graph) survives in the exception, which would otherwise keep the warm-up's stream
        # attached to the parameters' gradient accumulators.
        raise CaptureRefused(f"the training step synchronizes with the host: {failure}")


@contextmanager
def _restored(model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
              ) -> Iterator[None]:
    """Put back, in place, everything the block's training steps change: parameters, buffers,
    gradients (zeroed), optimizer state (state created in the block is zeroed: AdamW's fresh
    state), the loss sum and the random generators."""
    tensors: list[torch.Tensor] = [*model.parameters(), *model.buffers()]
    saved = [t.detach().clone() for t in tensors]
    saved_state = {id(p): {k: v.clone() for k, v in state.items() if torch.is_tensor(v)}
                   for p, state in optimizer.state.items()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        with torch.no_grad():
            for t, s in zip(tensors, saved, strict=True):
                t.copy_(s)
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.zero_()
            for param, state in optimizer.state.items():
                before = saved_state.get(id(param), {})
                for k, v in state.items():
                    if torch.is_tensor(v):
                        v.copy_(before[k]) if k in before else v.zero_()
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
