"""Adapt a trained model to new streets without labels: re-estimate its batch-norm statistics on them.

A network trained on a few drives normalises every layer with the means and variances of those drives; at
dusk, or under another camera's colours, the activations drift away from them and the classifier sees
inputs it was never trained on. Replacing the running statistics with those of unlabeled images of the
target streets (AdaBN, Li et al. 2016) costs one forward pass per image and no training. On CamVid's
unseen drives it is the largest single gain measured for both ReSeg and U-Net (docs/results.md).

`reestimate_batchnorm` is the step itself (Predictor.adapt_batchnorm feeds it the network's inputs);
reseg.adaptation_runs writes an adapted checkpoint from image files, folders or videos (`reseg adapt`);
`reseg evaluate --adapt-bn` adapts on the images of the split it scores (labels unused) before scoring them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from reseg.errors import ResegError

if TYPE_CHECKING:  # torch loads on first use, so that `reseg adapt --help` stays light
    import torch
    from torch import nn

DEFAULT_BATCH = 8  # images per pass; the batch norms normalise each pass with its own statistics
# The share of the new streets' statistics; the rest stays the training drives'. Half and half gained most on
# CamVid's dusk drive and cost nothing on its daylight one, where the new statistics alone cost 3.5 points
# (docs/results.md#test-time-adaptation-on-the-unseen-drives).
DEFAULT_WEIGHT = 0.5


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch norms whose running statistics the model normalises with at inference."""
    from torch import nn

    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.running_mean is not None
    ]


class _Moments:
    """Per-channel mean and variance of everything a batch norm sees, accumulated over batches in float64
    (Chan et al.'s pooled form), so the result is the images' own statistics whatever the batch size."""

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | None = None  # sum of x
        self.squares: torch.Tensor | None = None  # sum of x^2

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        import torch

        x = args[0].detach()
        dims = [0, *range(2, x.dim())]
        var, mean = torch.var_mean(x.float(), dim=dims, correction=0)
        n = x.numel() // x.shape[1]
        total, squares = (mean.double() * n), (var.double() + mean.double() ** 2) * n
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += n

    def write_to(self, layer: nn.modules.batchnorm._BatchNorm, weight: float) -> None:
        """The layer's statistics become `weight` x these + (1 - weight) x its own."""
        assert self.total is not None and self.squares is not None and self.count > 1
        mean = self.total / self.count
        var = (self.squares / self.count - mean**2).clamp_min(0) * (self.count / (self.count - 1))
        for buffer, new in ((layer.running_mean, mean), (layer.running_var, var)):
            buffer.copy_(weight * new.to(buffer.dtype) + (1 - weight) * buffer)


def reestimate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], weight: float = 1.0) -> int:
    """Replace every batch norm's running mean and variance by the mean and (unbiased) variance of its inputs
    over all of `batches` (the inputs the network sees); returns how many images went in. With `weight` < 1
    the result is that share of the new statistics and the rest of the old ones (a prior, as in Schneider
    et al. 2020), which keeps what the training drives taught where the new images are few or alike.

    As in AdaBN and `torch.optim.swa_utils.update_bn`, the batch norms normalise each batch with its own
    statistics during the pass; unlike `update_bn`, the statistics are pooled over every pixel of every image
    (not an average of per-batch variances, which would miss how images differ from each other and depend on
    the batch size), the rest of the model stays in eval mode (dropout off), and the model's train/eval modes
    and momenta are restored. After an error the old statistics are put back.
    """
    check_weight(weight)
    layers = batchnorm_layers(model)
    if not layers:
        raise ResegError(
            f"the model ({type(model).__name__}) has no batch-norm layers with running statistics, "
            "so there is nothing to adapt"
        )
    import torch

    modes = [(m, m.training) for m in model.modules()]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers]
    moments = [_Moments() for _ in layers]
    hooks = [m.register_forward_pre_hook(acc) for m, acc in zip(layers, moments, strict=True)]
    images = 0
    try:
        model.eval()
        for m in layers:
            m.train()
        with torch.no_grad():
            for x in batches:
                model(x)
                images += int(x.shape[0])
        if images == 0:
            raise ResegError("no images to adapt the batch-norm statistics on")
        _put_back(layers, saved)  # the pass itself moved them by its momentum
        for m, acc in zip(layers, moments, strict=True):
            acc.write_to(m, weight)
    except BaseException:
        _put_back(layers, saved)
        raise
    finally:
        for hook in hooks:
            hook.remove()
        for m, training in modes:
            m.training = training
    return images


def _put_back(layers: list[nn.modules.batchnorm._BatchNorm], saved: list[tuple[torch.Tensor, ...]]) -> None:
    for m, (mean, var, count) in zip(layers, saved, strict=True):
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.num_batches_tracked.copy_(count)


def adaptation_note(images: int, weight: float, where: str = "images") -> str:
    """What a predictor's `describe` says of an adapted model, e.g. in a report's inference line."""
    return f"batch norms adapted on {images} {where}, weight {weight:g}"


def check_weight(weight: float) -> float:
    """The share of new statistics must lie in (0, 1]: 0 would change nothing."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 < weight <= 1:
        raise ResegError(f"the adaptation weight must be a number in (0, 1], got {weight!r}")
    return float(weight)
