"""banet.train on CUDA (``needs_cuda``: these skip without a GPU): the uint8 cache on the GPU, bf16
autocast and channels_last held to the CPU's float32 path, and the loss read back every 25 steps.

Inputs are made on the CPU and copied, so the CPU and CUDA paths see the same numbers. The rule the
25-step read-back relies on (a non-finite loss between two read-backs is still an error) is also
checked on the CPU, with ``check_every`` set.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from banet.data.augment import prepare_batch, random_affine
from banet.data.dataset import load_split
from banet.data.synthetic import SynthConfig, write_dataset
from banet.losses import DeepSupervisionLoss
from banet.train import (AUGMENTATIONS, TrainError, build_model_config, build_optimizer, build_scheduler,
                         resolve_config, train_one_epoch)

SIZE = 32
CUDA = "cuda"  # a name, not a torch.device: nothing touches CUDA at import time


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("synth") / "data", SynthConfig(count=16, size=48, seed=0))


@pytest.fixture(scope="module")
def train_ds(synth):
    return load_split(str(synth), "train", SIZE, workers=1)


def _config(data, out="-", **kw):
    values = dict(preset="tiny", size=SIZE, batch_size=4, epochs=1, val_batch_size=8, workers=1, seed=0)
    values.update(kw)
    return resolve_config(str(data), str(out), **values)


def _on(ds, device):
    """A shallow copy of ``ds`` with its uint8 cache on ``device`` (as ``fit`` keeps it on a GPU)."""
    moved = copy.copy(ds)
    moved.images, moved.masks = ds.images.to(device), ds.masks.to(device)
    return moved


class Bar:
    def __init__(self):
        self.updates: list[int] = []

    def update(self, n: int = 1) -> None:
        self.updates.append(n)

    def set_postfix(self, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


class NanAt:
    """The real loss, with the reported total made NaN at one step (the weights stay finite)."""

    def __init__(self, loss_fn, step: int):
        self.loss_fn, self.step, self.calls = loss_fn, step, 0

    def __call__(self, *args):
        self.calls += 1
        loss, parts = self.loss_fn(*args)
        if self.calls == self.step:
            parts = {**parts, "total": parts["total"] * math.nan}
        return loss, parts


def _one_epoch(config, ds, batches, device, *, autocast=None, channels_last=False, loss_fn=None, bar=None,
               check_every=None, seed=0):
    from banet.model import build_model

    torch.manual_seed(seed)
    model = build_model(build_model_config(config)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model.parameters())
    scheduler = build_scheduler(config, optimizer, total_steps=len(batches))
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    loss_fn = loss_fn or DeepSupervisionLoss(dice_weight=config.dice_weight)
    parts = train_one_epoch(model, loss_fn, optimizer, scheduler, scaler, ds, batches, device,
                            augment=AUGMENTATIONS[config.augment], generator=torch.Generator().manual_seed(seed),
                            autocast=autocast, channels_last=channels_last, bar=bar, check_every=check_every)
    # the last step's gradients (train_one_epoch zeroes them before each backward, not after)
    grads = torch.cat([p.grad.detach().float().flatten().cpu() for p in model.parameters() if p.grad is not None])
    return parts, grads


def test_a_non_finite_loss_between_read_backs_is_still_an_error(synth, train_ds):
    """CPU, with the GPU's spacing of read-backs made small: 3 steps read back after 2 and 3."""
    config = _config(synth)
    batches = [torch.arange(i, i + 2) for i in range(3)]
    bar = Bar()
    parts, _ = _one_epoch(config, train_ds, batches, torch.device("cpu"), bar=bar, check_every=2)
    assert parts["steps"] == 3 and bar.updates == [2, 1] and math.isfinite(parts["total"])
    loss_fn = NanAt(DeepSupervisionLoss(dice_weight=config.dice_weight), step=1)  # read back at 2: finite
    with pytest.raises(TrainError, match="not finite in the steps before step 3"):
        _one_epoch(config, train_ds, batches, torch.device("cpu"), loss_fn=loss_fn, check_every=2)


@pytest.mark.needs_cuda
def test_the_loss_is_read_back_every_25_steps_on_cuda(synth, train_ds):
    config = _config(synth)
    cuda = torch.device(CUDA)
    batches = [torch.arange(i % 8, i % 8 + 2) for i in range(30)]  # 10 training images
    bar = Bar()
    parts, _ = _one_epoch(config, _on(train_ds, cuda), batches, cuda, autocast=torch.bfloat16, channels_last=True,
                          bar=bar)
    assert parts["steps"] == 30 and bar.updates == [25, 5] and math.isfinite(parts["total"])
    loss_fn = NanAt(DeepSupervisionLoss(dice_weight=config.dice_weight), step=3)
    with pytest.raises(TrainError, match="not finite in the steps before step 30"):
        _one_epoch(config, _on(train_ds, cuda), batches, cuda, autocast=torch.bfloat16, channels_last=True,
                   loss_fn=loss_fn)


@pytest.mark.needs_cuda
def test_gpu_augmentation_and_bf16_channels_last_forward_match_the_cpu(tiny_checkpoint, train_ds):
    """The official augmentation warped on the GPU from the same maps, and the bf16 channels_last
    forward pass, against float32 on the CPU."""
    from banet.checkpoint import model_from_checkpoint

    cuda = torch.device(CUDA)
    augment = AUGMENTATIONS["official"]
    idx = torch.arange(4)
    theta = random_affine(4, augment, generator=torch.Generator().manual_seed(0), aspect=train_ds.aspect[idx])
    x_cpu, y_cpu = prepare_batch(train_ds.images[idx], train_ds.masks[idx], augment, theta=theta)
    x_gpu, y_gpu = prepare_batch(train_ds.images[idx].to(cuda), train_ds.masks[idx].to(cuda), augment,
                                 theta=theta.to(cuda))
    assert x_gpu.device.type == "cuda" and x_gpu.dtype == torch.float32
    assert float((x_gpu.cpu() - x_cpu).abs().max()) < 1e-3  # normalized units; grid_sample on both
    assert float((y_gpu.cpu() == y_cpu).float().mean()) > 0.999  # masks: at most a few border pixels
    model, _ = model_from_checkpoint(tiny_checkpoint)
    model.eval()
    with torch.no_grad():
        model.head.bias -= model(x_cpu).median()  # about half of these images foreground: masks with edges
        ref = model(x_cpu)
        gpu = copy.deepcopy(model).to(cuda).to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = gpu(x_gpu.contiguous(memory_format=torch.channels_last)).float().cpu()
    scale = float(ref.abs().max())
    # bf16 keeps 8 bits of mantissa: a few % of the logits' scale; a wrong layout or path is off by ~100 %
    assert float((out - ref).abs().max()) <= 0.06 * scale, (float((out - ref).abs().max()), scale)
    assert 0.1 < float((ref > 0).float().mean()) < 0.9  # masks with boundaries: agreement means something
    assert float(((out > 0) == (ref > 0)).float().mean()) >= 0.98


@pytest.mark.needs_cuda
def test_a_training_step_on_cuda_matches_the_cpu(synth, train_ds):
    """One step of the official recipe from the same weights and batch, on the GPU's uint8 cache with
    bf16 autocast and channels_last: the same loss within bf16's precision, and the same gradient."""
    config = _config(synth, recipe="official", dice_weight=1.0)
    batches = [torch.arange(4)]
    cpu_parts, cpu_grad = _one_epoch(config, train_ds, batches, torch.device("cpu"))
    cuda = torch.device(CUDA)
    gpu_parts, gpu_grad = _one_epoch(config, _on(train_ds, cuda), batches, cuda, autocast=torch.bfloat16,
                                     channels_last=True)
    for key, value in cpu_parts.items():
        if key != "steps":
            assert gpu_parts[key] == pytest.approx(value, rel=0.03, abs=1e-3), key
    assert gpu_grad.shape == cpu_grad.shape and float(cpu_grad.norm()) > 0
    # bf16 autocast turns the gradient by some degrees (cosine 0.88 seen with the CPU's bf16 autocast
    # on this tiny random-weight model); the gradient of another batch was at 0.04
    cosine = float(torch.nn.functional.cosine_similarity(gpu_grad, cpu_grad, dim=0))
    assert cosine > 0.8, cosine


@pytest.mark.needs_cuda
def test_fit_on_cuda_keeps_a_uint8_cache_on_the_gpu_with_bf16_and_channels_last(synth, tmp_path, monkeypatch):
    from banet import train
    from banet.checkpoint import model_from_checkpoint

    seen = []
    real = train.train_one_epoch

    def spy(model, loss_fn, optimizer, scheduler, scaler, dataset, batches, device, **kwargs):
        first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        seen.append({"device": device.type, "images": (dataset.images.device.type, dataset.images.dtype),
                     "masks": (dataset.masks.device.type, dataset.masks.dtype), "autocast": kwargs["autocast"],
                     "channels_last": kwargs["channels_last"],
                     "weights_channels_last": first_conv.weight.is_contiguous(memory_format=torch.channels_last)})
        return real(model, loss_fn, optimizer, scheduler, scaler, dataset, batches, device, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", spy)
    result = train.fit(_config(synth, tmp_path / "run", device="cuda", max_steps=3))
    assert seen == [{"device": "cuda", "images": ("cuda", torch.uint8), "masks": ("cuda", torch.uint8),
                     "autocast": torch.bfloat16, "channels_last": True, "weights_channels_last": True}]
    assert result["history"][0]["step"] == 3 and 0.0 <= result["history"][0]["val"]["mean"]["JA"] <= 1.0
    model, _ = model_from_checkpoint(result["best"])  # a GPU-trained checkpoint loads on the CPU
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert model(torch.zeros(1, 3, SIZE, SIZE)).shape == (1, 1, SIZE, SIZE)
