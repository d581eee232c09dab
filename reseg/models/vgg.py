"""VGG-16 encoder cut at a named conv layer, with torchvision's weights or a local file.

ReSeg uses the first seven conv layers of VGG-16 (up to conv3_3: stride 4, 256 channels). A skip
decoder also asks for the outputs of earlier blocks (conv1_2 at stride 1, conv2_2 at stride 2, ...).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from reseg.errors import ResegError

# The last conv (after its ReLU) of each block: block, channels, stride.
LAYERS = {
    "conv1_2": (1, 64, 1),
    "conv2_2": (2, 128, 2),
    "conv3_3": (3, 256, 4),
    "conv4_3": (4, 512, 8),
    "conv5_3": (5, 512, 16),
}
CUTS = {k: LAYERS[k] for k in ("conv3_3", "conv4_3", "conv5_3")}  # where the encoder may end
ARCHS = ("vgg16", "vgg16_bn")
WIDTHS = (0.125, 1.0)  # the range of `width`: a multiplier of every conv's channel count
# VGG-16's conv widths by block ("M": 2x2 max-pool), as in the paper and torchvision's configuration "D"
VGG16_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _weights(arch: str):  # -> torchvision WeightsEnum member; torchvision loads only when weights are asked for
    from torchvision.models import VGG16_BN_Weights, VGG16_Weights

    return {"vgg16": VGG16_Weights.IMAGENET1K_V1, "vgg16_bn": VGG16_BN_Weights.IMAGENET1K_V1}[arch]


def vgg_layers(plan: list, batch_norm: bool) -> nn.Sequential:
    """VGG's `features` with torchvision's layer order (conv, [bn], relu; pool), so its key names load as they are."""
    layers: list[nn.Module] = []
    channels = 3
    for v in plan:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        channels = v
    return nn.Sequential(*layers)


class InstanceBatchNorm2d(nn.BatchNorm2d):
    """IBN-a's normalisation (Pan et al., ECCV 2018): the first half of the channels normalised per image
    (instance norm), the rest as batch norm.

    Instance norm in the shallow layers removes each image's own contrast and colour cast, which is what
    changes most between drives, while batch norm keeps what tells the classes apart. It is a BatchNorm2d
    with the same parameters and buffers (the instance half keeps its affine weights, its running
    statistics stay unused), so a batch-norm state dict, torchvision's ImageNet weights included, loads as it is.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.instance_channels = num_features // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.instance_channels
        per_image = F.instance_norm(x[:, :k], weight=self.weight[:k], bias=self.bias[:k], eps=self.eps)
        return torch.cat([per_image, self._batch_norm(x[:, k:], k)], dim=1)

    def _batch_norm(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """BatchNorm2d's forward on channels k and up; F.batch_norm updates the running statistics' views in place."""
        momentum = self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if momentum is None:  # a cumulative average, as BatchNorm2d does
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(
            x,
            self.running_mean[k:],
            self.running_var[k:],
            self.weight[k:],
            self.bias[k:],
            self.training,
            momentum or 0.0,
            self.eps,
        )


def use_instance_norm(features: nn.Sequential, blocks: int) -> None:
    """Swap the batch norms of VGG's first `blocks` blocks (model.ibn_blocks) for InstanceBatchNorm2d (IBN-a),
    keeping their state. Deeper blocks keep batch norm, as IBN-Net does."""
    if not isinstance(blocks, int) or isinstance(blocks, bool) or not 0 <= blocks <= 5:
        raise ResegError(f"model.ibn_blocks must be an integer from 0 to 5 (VGG-16's blocks), got {blocks!r}")
    swapped, block = 0, 1
    for i, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            block += 1
        elif isinstance(layer, nn.BatchNorm2d) and block <= blocks:
            ibn = InstanceBatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum)
            ibn.load_state_dict(layer.state_dict())
            features[i] = ibn.to(layer.weight.device)
            swapped += 1
    if blocks and not swapped:
        raise ResegError(
            f"model.ibn_blocks={blocks} needs an encoder with batch norm to swap: use model.encoder=vgg16_bn"
        )


def _cut_index(features: nn.Sequential, block: int) -> int:
    """Index just past the ReLU of the last conv of `block` (the pool before the next block is excluded)."""
    pools = 0
    for i, layer in enumerate(features):
        if isinstance(layer, nn.MaxPool2d):
            pools += 1
            if pools == block:
                return i
    return len(features)


def scaled_channels(channels: int, width: float) -> int:
    """`channels * width` rounded to a multiple of 8 (what vectorised kernels like), at least 8."""
    return max(8, int(round(channels * width / 8)) * 8)


def imagenet_cache_path(arch: str) -> Path:
    """Where torchvision looks for (and downloads) the ImageNet weights: $TORCH_HOME/hub/checkpoints/<file>."""
    url = _weights(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    cached = imagenet_cache_path(arch)
    if cached.is_file():
        return _cached_state_dict(cached, arch)
    try:
        return _weights(arch).get_state_dict(progress=True)
    except Exception as err:  # URLError, socket errors, HTTP errors: all mean "not reachable"
        raise ResegError(
            f"could not download the ImageNet weights for {arch} ({type(err).__name__}: {err}). "
            f"torchvision looks for them at {cached} (set TORCH_HOME to move the cache). "
            f"Put the file {cached.name} from {_weights(arch).url} there, or pass a local weights file path "
            f"(model.encoder_weights=/path/to/{arch}.pth)"
        ) from None


def _cached_state_dict(cached: Path, arch: str) -> dict[str, torch.Tensor]:
    """The cached download; a truncated or damaged file says which file and how to get a good one."""
    try:
        state = torch.load(cached, map_location="cpu", weights_only=True)
    except Exception as err:
        state, reason = None, f"{type(err).__name__}: {err}"
    else:
        reason = f"it holds a {type(state).__name__}, not a state dict"
    if isinstance(state, dict):
        return state
    raise ResegError(
        f"the cached ImageNet weights {cached} are damaged ({' '.join(reason.split())[:200]}). "
        f"Delete the file so that it is downloaded again, or replace it with {cached.name} "
        f"from {_weights(arch).url}"
    ) from None


def _file_state_dict(path: str) -> dict[str, torch.Tensor]:
    file = Path(path)
    if not file.is_file():
        raise ResegError(
            f"encoder weights file not found: {file} (expected a torchvision {ARCHS} state dict, "
            f"or use encoder_weights=imagenet or none)"
        )
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ResegError(f"encoder weights file {file} is unreadable: {type(err).__name__}: {err}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ResegError(f"encoder weights file {file} does not hold a state dict (got {type(state).__name__})")
    return state


class VGGEncoder(nn.Module):
    """torchvision VGG-16(-BN) `features` up to a named layer; optionally frozen in eval mode.

    `width` scales every conv's channel count (for training from scratch where compute is scarce, e.g.
    0.5 on a CPU); pretrained weights exist only for the full width. `ibn_blocks` turns the batch norms of
    the first blocks into IBN-a's half-instance norms (`InstanceBatchNorm2d`).
    """

    def __init__(
        self,
        arch: str = "vgg16",
        cut: str = "conv3_3",
        weights: str | None = None,
        freeze: bool = False,
        width: float = 1.0,
        ibn_blocks: int = 0,
    ) -> None:
        super().__init__()
        if arch not in ARCHS:
            raise ResegError(f"unknown encoder {arch!r}; valid choices: {', '.join(ARCHS)}")
        if cut not in CUTS:
            raise ResegError(f"unknown encoder cut layer {cut!r}; valid choices: {', '.join(CUTS)}")
        if not isinstance(width, (int, float)) or not WIDTHS[0] <= width <= WIDTHS[1]:
            raise ResegError(f"model.encoder_width must be a number in [{WIDTHS[0]:g}, {WIDTHS[1]:g}], got {width!r}")
        if isinstance(weights, str) and weights.lower() in ("none", "null", ""):
            weights = None
        if weights is not None and width != 1:
            raise ResegError(
                f"model.encoder_weights={weights} needs model.encoder_width=1 (got {width:g}): "
                f"pretrained VGG weights exist only at full width; use model.encoder_weights=null "
                f"to train a narrower encoder from scratch"
            )
        self.width = float(width)
        block, self.stride = CUTS[cut][0], CUTS[cut][2]
        self.out_channels = scaled_channels(CUTS[cut][1], width)
        # Only `features`: building torchvision's full VGG would also allocate its 120M-parameter classifier.
        plan = [v if v == "M" else scaled_channels(int(v), width) for v in VGG16_PLAN]
        full = vgg_layers(plan, batch_norm=arch == "vgg16_bn")
        for m in full.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        use_instance_norm(full, ibn_blocks)
        self.features = full[: _cut_index(full, block)]
        # Number of `features` layers that produce each tap (the outputs a skip decoder may ask for).
        self.tap_ends = {name: _cut_index(full, b) for name, (b, _, s) in LAYERS.items() if s <= self.stride}
        self.arch, self.cut, self.frozen = arch, cut, freeze
        if weights is not None:
            self.load_weights(weights)
        if freeze:
            for p in self.parameters():
                p.requires_grad_(False)
            self.eval()

    def load_weights(self, weights: str) -> None:
        """Load 'imagenet' or a file with torchvision key names ('features.N.weight' or 'N.weight')."""
        if weights == "imagenet":
            state, source = _imagenet_state_dict(self.arch), str(imagenet_cache_path(self.arch))
        elif isinstance(weights, str):
            state, source = _file_state_dict(weights), weights
        else:
            raise ResegError(f"unknown encoder weights {weights!r}; valid choices: none, imagenet, or a file path")
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        if not feats:
            feats = {k: v for k, v in state.items() if k.split(".")[0].isdigit()}
        own = self.features.state_dict()
        missing = [k for k in own if k not in feats]
        wrong = [
            f"{k} {tuple(feats[k].shape)} != {tuple(v.shape)}"
            for k, v in own.items()
            if k in feats and feats[k].shape != v.shape
        ]
        if missing or wrong:
            first = (missing + wrong)[:5]
            raise ResegError(
                f"encoder weights {source} do not match {self.arch} up to {self.cut}: "
                f"first mismatched keys: {', '.join(first)} (expected torchvision's "
                f"'features.N.weight' names; file keys start with {list(state)[:3]})"
            )
        self.features.load_state_dict({k: feats[k] for k in own})

    def train(self, mode: bool = True) -> VGGEncoder:
        """A frozen encoder stays in eval mode so its batch-norm statistics never move."""
        return super().train(mode and not self.frozen)

    def tap(self, name: str) -> tuple[int, int]:
        """(channels, stride) of an intermediate output; only layers before the cut are available."""
        if name not in self.tap_ends or LAYERS[name][2] >= self.stride:
            usable = [n for n in self.tap_ends if LAYERS[n][2] < self.stride]
            raise ResegError(
                f"model.skip_layers: {name!r} is not an encoder layer before the cut "
                f"model.encoder_cut={self.cut}; valid choices: {', '.join(usable)}"
            )
        return scaled_channels(LAYERS[name][1], self.width), LAYERS[name][2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_taps(self, x: torch.Tensor, names: list[str]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The encoder output and the outputs of the layers `names`, in the order asked."""
        ends = {self.tap_ends[n]: n for n in names}
        taps: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i + 1 in ends:
                taps[ends[i + 1]] = x
        return x, [taps[n] for n in names]
