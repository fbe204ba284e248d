r"""Image adapter: puts NCHW image batches on the batched proximal core.

The core solvers work on (B, D) rows; the adapter flattens images to rows (D = C·H·W), holds
the pixel box :math:`[l, u]` (any value range, a float or one value per channel), the
classifier and its margins, the pixel groups (the C channel entries of one pixel) and the
patch groups.  Everything stays on the adapter's device (CPU or CUDA).

Margins (positive = not yet achieved, negative = achieved), with logits Z:

* untargeted, true label l: :math:`m(y) = Z_l(y) - \max_{j \ne l} Z_j(y)`;
* targeted, target t: :math:`m(y) = \max_{j \ne t} Z_j(y) - Z_t(y)`.

The Carlini–Wagner loss is :math:`[m(y) + \kappa]_+`.

Speed (no change to any result beyond float rounding): ``channels_last=True`` stores the
model's 4-D weights channels-last, where the CPU kernels of convolution and max pooling are
several times faster than on NCHW (the bundles' CNNs turn it on on the CPU); ``chunk`` runs the
model on slices of at most that many rows (default 256 on the CPU, off on CUDA) and
concatenates the logits (autograd passes through), which keeps the activations in cache: on a
3,000-row batch of the MNIST CNN a forward + backward pass costs 2–3× less per row.
:class:`LogitCache` keeps the logits of the last gradient-free evaluation of a loss so that the
early-stop test on the accepted iterate (the same points) costs no second forward pass.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class ImageAdapter:
    """A classifier on NCHW images with a pixel box ``[lower, upper]`` on ``device``.

    The model is moved to ``device``, put in eval mode and its parameters frozen
    (``requires_grad=False``): attacks differentiate with respect to the input only.
    """

    def __init__(self, model: nn.Module, lower: float | Tensor = 0.0, upper: float | Tensor = 1.0,
                 device: str | torch.device | None = None, channels_last: bool = False, chunk: int | None = -1):
        if device is None:
            try:
                device = next(model.parameters()).device
            except StopIteration:
                device = torch.device("cpu")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if channels_last:  # only for models that reshape (not .view) after their convolutions
            self.model = self.model.to(memory_format=torch.channels_last)
        self.chunk = (256 if self.device.type == "cpu" else None) if chunk == -1 else chunk
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.lower = self._channel_value(lower)
        self.upper = self._channel_value(upper)
        if bool((self.lower >= self.upper).any()):
            raise ValueError("the pixel box needs lower < upper")

    def _channel_value(self, v: float | Tensor) -> Tensor:
        t = torch.as_tensor(v, dtype=torch.float32, device=self.device)
        return t.reshape(1, -1, 1, 1) if t.dim() == 1 else t.reshape(1, 1, 1, 1)

    # ------------------------------------------------------------------ shapes and boxes
    def to_device(self, x: Tensor | object) -> Tensor:
        x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        if x.dim() != 4:
            raise ValueError(f"images must be an NCHW batch, got shape {tuple(x.shape)}")
        return x

    def clamp(self, x: Tensor) -> Tensor:
        """Project images onto the pixel box."""
        return torch.minimum(torch.maximum(x, self.lower), self.upper)

    def delta_box(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Bounds (B, D) of a perturbation w with x + w in the box: [l − x, u − x] (contains 0)."""
        lo = (self.lower - x).reshape(x.shape[0], -1)
        hi = (self.upper - x).reshape(x.shape[0], -1)
        return torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))

    @staticmethod
    def pixel_groups(shape: tuple[int, int, int], device: torch.device | str | None = None) -> Tensor:
        """(C·H·W,) group id of each flat entry: its pixel (the channels of a pixel share one id)."""
        c, h, w = shape
        return torch.arange(h * w, device=device).repeat(c)

    # ------------------------------------------------------------------ model
    def logits(self, x: Tensor) -> Tensor:
        """Z(x) (B, classes), in slices of ``chunk`` rows when set (differentiable)."""
        if self.chunk is None or len(x) <= self.chunk:
            return self.model(x)
        return torch.cat([self.model(x[i:i + self.chunk]) for i in range(0, len(x), self.chunk)])

    @torch.no_grad()
    def predict(self, x: Tensor, batch_size: int = 1024) -> Tensor:
        x = self.to_device(x)
        return torch.cat([self.logits(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])

    @staticmethod
    def margin(z: Tensor, labels: Tensor, targeted: bool) -> Tensor:
        """Margin per row (see module docstring); < 0 means the attack goal is reached."""
        own = z.gather(1, labels[:, None]).squeeze(1)
        other = z.scatter(1, labels[:, None], float("-inf")).amax(1)
        return other - own if targeted else own - other

    def cw_loss(self, x: Tensor, labels: Tensor, targeted: bool, kappa: float = 0.0) -> Tensor:
        r"""Carlini–Wagner loss :math:`[m(x) + \kappa]_+` per row (B,)."""
        return torch.clamp(self.margin(self.logits(x), labels, targeted) + kappa, min=0.0)

    @staticmethod
    def reached(z: Tensor, labels: Tensor, targeted: bool) -> Tensor:
        """(B,) success from logits: argmax = target (targeted) or ≠ label (untargeted)."""
        pred = z.argmax(1)
        return pred == labels if targeted else pred != labels

    @torch.no_grad()
    def success(self, x: Tensor, labels: Tensor, targeted: bool) -> Tensor:
        """(B,) True where x is classified as the target (targeted) or not as the label (untargeted)."""
        return self.reached(self.logits(x), labels, targeted)


class LogitCache:
    """The logits of the last gradient-free evaluation, keyed by the flat points and row ids.

    The core solvers evaluate the loss at the candidate point without gradients, accept it or
    not, then ask the early-stop test about the accepted iterate; :meth:`logits` answers rows
    whose point is bit-for-bit the cached one from the cache and runs the model on the others.
    """

    def __init__(self) -> None:
        self.w: Tensor | None = None
        self.rows: Tensor | None = None
        self.z: Tensor | None = None

    def store(self, w: Tensor, rows: Tensor, z: Tensor) -> None:
        if not torch.is_grad_enabled():
            self.w, self.rows, self.z = w, rows, z.detach()

    def logits(self, adapter: ImageAdapter, w: Tensor, rows: Tensor, images: Tensor) -> Tensor:
        """Logits of ``images`` (the points x[rows] + w); cached rows reused, the rest computed."""
        if self.w is None or self.w.shape != w.shape or not torch.equal(self.rows, rows):
            return adapter.logits(images)
        same = (w == self.w).all(1)
        if bool(same.all()):
            return self.z
        z = self.z.clone()
        z[~same] = adapter.logits(images[~same])
        return z
