"""ClassMix on a training batch (reseg.data.mixing) and its place in the training step."""

from __future__ import annotations

import pytest
import torch

from reseg.data.mixing import class_mix


def _batch(n: int = 4, h: int = 12, w: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is filled with i (so a pixel says where it came from); labels of 5 classes and some ignore."""
    gen = torch.Generator().manual_seed(seed)
    masks = torch.randint(0, 5, (n, h, w), generator=gen, dtype=torch.uint8)
    masks[:, 0, :] = 255
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, h, w).clone()
    return images, masks


def test_every_image_takes_whole_classes_half_of_its_neighbours() -> None:
    images, masks = _batch()
    torch.manual_seed(0)
    mixed, labels = class_mix(images, masks, p=1.0)
    n = images.shape[0]
    for i in range(n):
        j = (i - 1) % n
        from_j = mixed[i, 0] == j
        assert torch.equal(mixed[i, 0][~from_j], images[i, 0][~from_j])  # the rest untouched
        assert torch.all(mixed[i][:, from_j] == j)  # all three channels pasted together
        assert torch.equal(labels[i][from_j], masks[j][from_j]) and torch.equal(labels[i][~from_j], masks[i][~from_j])
        pasted = set(masks[j][from_j].unique().tolist())
        assert len(pasted) == 2 and 255 not in pasted  # half of the 5 classes, rounded down; never ignore
        assert torch.equal(
            from_j, torch.isin(masks[j], torch.tensor(sorted(pasted), dtype=torch.uint8))
        )  # whole classes


def test_nothing_mixes_at_p0_with_one_image_or_a_one_class_source() -> None:
    images, masks = _batch()
    assert class_mix(images, masks, p=0.0)[0] is images
    one = class_mix(images[:1], masks[:1], p=1.0)
    assert one[0] is images[:1] or torch.equal(one[0], images[:1])
    flat = torch.zeros_like(masks)
    mixed, labels = class_mix(images, flat, p=1.0)
    assert torch.equal(mixed, images) and torch.equal(labels, flat)


def test_the_same_seed_mixes_alike_and_p_sets_how_often() -> None:
    images, masks = _batch(n=64, h=4, w=4)
    torch.manual_seed(3)
    first = class_mix(images, masks, p=0.5)
    torch.manual_seed(3)
    again = class_mix(images, masks, p=0.5)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    changed = (first[0] != images).flatten(1).any(1).float().mean().item()
    assert 0.25 < changed < 0.75


def test_the_training_step_mixes_when_data_class_mix_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from reseg.config import load_config
    from reseg.engine import trainer as trainer_mod

    seen: list[torch.Tensor] = []
    monkeypatch.setattr(
        trainer_mod,
        "forward_loss",
        lambda model, crit, batch, run: (seen.append(batch["image"]), (None, float("nan")))[1],
    )
    images, masks = _batch()
    for p, same in ((0.0, True), (1.0, False)):
        cfg = load_config(
            None, ["model.renet_hidden=4", "model.decoder_filters=[4,4]", "model.num_classes=5", f"data.class_mix={p}"]
        )
        trainer = trainer_mod.Trainer.for_steps(cfg)
        with pytest.raises(Exception, match="nan"):
            trainer.train_one_step({"image": images, "mask": masks})
        assert torch.equal(seen[-1], images) == same


def test_class_mix_outside_0_1_is_refused_by_name() -> None:
    from reseg.config import load_config
    from reseg.errors import ResegError

    with pytest.raises(ResegError, match="data.class_mix"):
        load_config(None, ["data.class_mix=1.5"])
