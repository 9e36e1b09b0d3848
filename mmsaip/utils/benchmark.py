"""Measurement helpers for the pretraining benchmark.

``tools/analysis/benchmark_pretrain.py`` wraps these: a hand count of ViT
forward FLOPs, a FLOP counter that also counts PyTorch's CPU attention
kernel, the machine's own matmul rate, step timing and peak memory.
"""
import os
import resource
import statistics
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.flop_counter import (FlopCounterMode,
                                      sdpa_backward_flop_count,
                                      sdpa_flop_count)

aten = torch.ops.aten


def vit_forward_flops(image_size: Sequence[int],
                      patch_size: int = 16,
                      embed_dims: int = 192,
                      num_layers: int = 12,
                      feedforward_channels: int = 768,
                      in_channels: int = 3,
                      num_extra_tokens: int = 1,
                      batch_size: int = 1) -> Dict[str, int]:
    """Count the FLOPs of a ViT forward pass by hand.

    Only matrix products are counted, at 2 FLOPs per multiply-add: the
    patch-embedding convolution and, in every block, the qkv projection,
    the two attention products (Q K^T and the weighted sum of V), the
    output projection and the two MLP layers. Norms, softmax, GELU and
    additions are left out, as ``torch.utils.flop_counter`` does.

    Args:
        image_size (Sequence[int]): Input (H, W).
        patch_size (int): Patch size P. Defaults to 16.
        embed_dims (int): Token width C. Defaults to 192 (ViT-Tiny).
        num_layers (int): Number of blocks. Defaults to 12.
        feedforward_channels (int): MLP hidden width. Defaults to 768.
        in_channels (int): Image channels. Defaults to 3.
        num_extra_tokens (int): Class and other extra tokens. Defaults to 1.
        batch_size (int): Number of images B. Defaults to 1.

    Returns:
        dict[str, int]: FLOPs of ``patch_embed``, ``qkv``, ``attention``,
        ``proj`` and ``mlp`` over all blocks, and their ``total``.
    """
    num_patches = (image_size[0] // patch_size) * (image_size[1] //
                                                   patch_size)
    tokens = num_patches + num_extra_tokens
    channels = embed_dims
    per_image = dict(
        patch_embed=2 * num_patches * in_channels * patch_size**2 *
        channels,
        qkv=num_layers * 2 * tokens * channels * 3 * channels,
        # Q K^T and attention @ V: (L x C) by (C x L), (L x L) by (L x C).
        attention=num_layers * 2 * (2 * tokens * tokens * channels),
        proj=num_layers * 2 * tokens * channels * channels,
        mlp=num_layers * 2 * (2 * tokens * channels * feedforward_channels),
    )
    flops = {key: value * batch_size for key, value in per_image.items()}
    flops['total'] = sum(flops.values())
    return flops


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args,
                    out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(grad_out_shape, query_shape, key_shape,
                             value_shape, *args, out_shape=None,
                             **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape,
                                    value_shape)


# torch.utils.flop_counter counts the CUDA attention kernels but, in torch
# 2.x, not the CPU flash kernel that F.scaled_dot_product_attention uses
# on CPU. These entries count it with the same formulas.
CPU_ATTENTION_FLOP_FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
    _cpu_sdpa_backward_flops,
}


def flop_counter() -> FlopCounterMode:
    """Return a silent ``FlopCounterMode`` that also counts CPU attention."""
    return FlopCounterMode(
        display=False, custom_mapping=CPU_ATTENTION_FLOP_FORMULAS)


def count_flops(fn: Callable[[], Any]) -> Tuple[Any, int]:
    """Run ``fn`` once and count its FLOPs (2 per multiply-add).

    Args:
        fn (Callable): Called without arguments.

    Returns:
        tuple: The result of ``fn`` and the FLOP count.
    """
    with flop_counter() as counter:
        result = fn()
    return result, counter.get_total_flops()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work; a no-op on CPU."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any],
              iters: int,
              warmup: int = 1,
              device: torch.device = torch.device('cpu'),
              before_each: Optional[Callable[[], Any]] = None) -> List[float]:
    """Time ``fn`` after ``warmup`` untimed calls.

    Args:
        fn (Callable): Called without arguments.
        iters (int): Timed calls, at least 1.
        warmup (int): Untimed calls first. Defaults to 1.
        device (torch.device): Synchronised around every timed call, so GPU
            work is included. Defaults to CPU.
        before_each (Callable, optional): Called without arguments before
            each timed call, outside the timing. Defaults to None.

    Returns:
        list[float]: Seconds per timed call.
    """
    if iters < 1:
        raise ValueError(f'iters must be >= 1, got {iters}')
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(iters):
        if before_each is not None:
            before_each()
            synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def median(values: Sequence[float]) -> float:
    """Return the median of a non-empty sequence."""
    return float(statistics.median(values))


def measure_matmul_rate(size: int = 2048,
                        dtype: torch.dtype = torch.float32,
                        device: torch.device = torch.device('cpu'),
                        iters: int = 5,
                        warmup: int = 2) -> float:
    """Measure this machine's square matmul rate.

    Args:
        size (int): N of the (N x N) by (N x N) product. Defaults to 2048.
        dtype (torch.dtype): Operand dtype. Defaults to float32.
        device (torch.device): Where to run. Defaults to CPU.
        iters (int): Timed products. Defaults to 5.
        warmup (int): Untimed products first. Defaults to 2.

    Returns:
        float: FLOP/s of the median product, 2 * N^3 FLOPs each.
    """
    generator = torch.Generator(device='cpu').manual_seed(0)
    left = torch.randn(size, size, generator=generator).to(device, dtype)
    right = torch.randn(size, size, generator=generator).to(device, dtype)
    seconds = time_call(lambda: torch.mm(left, right), iters, warmup,
                        device)
    return 2 * size**3 / median(seconds)


def _current_rss_bytes() -> Optional[int]:
    """Resident set size of this process from /proc, or None."""
    try:
        with open('/proc/self/statm', encoding='ascii') as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf('SC_PAGE_SIZE')


def max_rss_bytes() -> int:
    """Peak resident set size of this process over its whole life."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak if sys.platform == 'darwin' else peak * 1024


class PeakMemory:
    """Context manager that records peak memory inside its block.

    On CUDA it reads ``torch.cuda.max_memory_allocated`` after resetting
    the peak. On CPU a background thread samples the resident set size
    every ``interval`` seconds from /proc, so peaks shorter than the
    interval can be missed. Where /proc is missing, it falls back to the
    process-lifetime peak from ``getrusage``, which includes earlier
    phases.

    Args:
        device (torch.device): Device whose memory is measured.
        interval (float): CPU sampling period in seconds.
            Defaults to 0.005.

    Attributes:
        peak_bytes (int): The peak, set on exit.
        source (str): 'cuda_max_allocated', 'sampled_rss' or
            'lifetime_max_rss', set on exit.
    """

    def __init__(self,
                 device: torch.device,
                 interval: float = 0.005) -> None:
        self.device = device
        self.interval = interval
        self.peak_bytes = 0
        self.source = ''
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _sample(self) -> None:
        while not self._stop.is_set():
            rss = _current_rss_bytes()
            if rss is not None:
                self.peak_bytes = max(self.peak_bytes, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> 'PeakMemory':
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif _current_rss_bytes() is not None:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            self.source = 'cuda_max_allocated'
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self.peak_bytes, _current_rss_bytes() or 0)
            self.source = 'sampled_rss'
        else:
            self.peak_bytes = max_rss_bytes()
            self.source = 'lifetime_max_rss'


AMP_DTYPES = {'none': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


class TrainStep:
    """One optimisation step of a self-supervised model, as the runner does.

    A call runs the forward pass, under autocast when ``amp`` is not
    'none', and sums the loss terms with ``model.parse_losses``. It then
    back-propagates (through a gradient scaler for fp16), steps the
    optimizer and clears the gradients. When the model has
    ``update_teacher`` (SAIP), it also updates the EMA teacher.

    Args:
        model (nn.Module): An mmengine ``BaseModel``.
        optimizer (torch.optim.Optimizer): Optimizer over its parameters.
        loss_fn (Callable): Maps the model inputs to the loss dict.
        amp (str): 'none', 'fp16' or 'bf16'. Defaults to 'none'.
    """

    def __init__(self,
                 model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[Any], Dict[str, torch.Tensor]],
                 amp: str = 'none') -> None:
        if amp not in AMP_DTYPES:
            raise ValueError(f'amp must be one of {tuple(AMP_DTYPES)}, got '
                             f'{amp!r}')
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.amp_dtype = AMP_DTYPES[amp]
        self.device = next(model.parameters()).device
        self.scaler = None
        if self.amp_dtype is torch.float16:
            self.scaler = torch.amp.GradScaler(self.device.type)

    def forward(self, inputs: Any) -> Dict[str, torch.Tensor]:
        """Return the loss dict of ``inputs`` under the step's autocast."""
        with torch.autocast(
                self.device.type,
                dtype=self.amp_dtype,
                enabled=self.amp_dtype is not None):
            return self.loss_fn(inputs)

    def __call__(self, inputs: Any) -> torch.Tensor:
        """Run the step on ``inputs``; return the detached total loss."""
        return self.update(self.forward(inputs))

    def update(self, losses: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Back-propagate ``losses`` from :meth:`forward` and update.

        Returns:
            Tensor: The detached total loss.
        """
        loss, _ = self.model.parse_losses(losses)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if hasattr(self.model, 'update_teacher'):
            self.model.update_teacher()
        return loss.detach()
