"""Training speed at 64^2: synthfair's training loop against the same model trained the way diffusers does.

1. ``synthfair``: `synthfair.model.train.train` with the preset's model and batch (covariate-conditioned
   `UNet2DConditionModel`, per-step seeded batches and noise, condition dropout, EMA, accelerate).
2. ``diffusers example``: the loop of diffusers' ``examples/unconditional_image_generation/
   train_unconditional.py``: a `UNet2DModel` with the same levels, channels and attention (no conditioning),
   a shuffling `DataLoader`, `DDPMScheduler.add_noise`, MSE on epsilon, ``accelerator.backward``, gradient
   clipping to 1, AdamW + cosine LR schedule, `EMAModel` stepped after every update.

Both run in this process on the CPU with torch's default threads. Images/s is measured over ``--steps``
steps after ``--warmup`` steps. The data is the demo's 64^2 cache (``synthfair demo`` writes demo/cache-64);
without one, a 256-subject procedural phantom cache is made in a temporary directory.

    python bench/train.py [--config configs/phantom-base-64.yaml] [--data demo/cache-64] [--steps 10]
        [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def synthfair_loop(config, data: Path, warmup: int, steps: int) -> list[float]:
    """Seconds per step of synthfair's own training loop (after ``warmup`` steps)."""
    from synthfair.model.train import train

    times, last = [], [time.perf_counter()]

    def on_step(step: int, loss: float, rate: float) -> None:
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    with tempfile.TemporaryDirectory() as out:
        train(config, data, out, on_step=on_step, stop_at=warmup + steps)
    return times[warmup:]


def diffusers_loop(config, data: Path, warmup: int, steps: int) -> tuple[list[float], int]:
    """Seconds per step of the diffusers example's loop on the same network size and batch."""
    from accelerate import Accelerator
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from synthfair.model.data import CacheDataset

    m = config.model
    levels = range(len(m.block_out_channels))
    model = UNet2DModel(
        sample_size=m.sample_size,
        in_channels=1,
        out_channels=1,
        layers_per_block=m.layers_per_block,
        block_out_channels=m.block_out_channels,
        down_block_types=tuple(
            "AttnDownBlock2D" if i in m.attention_levels else "DownBlock2D" for i in levels
        ),
        up_block_types=tuple(
            "AttnUpBlock2D" if i in m.attention_levels else "UpBlock2D" for i in reversed(levels)
        ),
        norm_num_groups=m.norm_num_groups,
        attention_head_dim=8,
    )
    dataset = CacheDataset(data, split=config.split, in_memory=True)
    images = torch.stack([torch.from_numpy(dataset.image(i)) for i in range(len(dataset))])[:, None] * 2 - 1
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(images), batch_size=config.batch_size, shuffle=True, drop_last=True
    )
    noise_scheduler = DDPMScheduler(num_train_timesteps=m.num_train_timesteps, beta_schedule=m.beta_schedule)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=1e-6)
    lr_scheduler = get_scheduler(
        "cosine", optimizer, num_warmup_steps=config.warmup_steps, num_training_steps=config.steps
    )
    accelerator = Accelerator(mixed_precision="no")
    model, optimizer, loader, lr_scheduler = accelerator.prepare(model, optimizer, loader, lr_scheduler)
    ema = EMAModel(
        model.parameters(),
        decay=config.ema_decay,
        use_ema_warmup=True,
        inv_gamma=1.0,
        power=3 / 4,
        model_cls=UNet2DModel,
        model_config=model.config,
    )
    ema.to(accelerator.device)
    times, done = [], 0
    while done < warmup + steps:
        for (clean,) in loader:
            start = time.perf_counter()
            noise = torch.randn(clean.shape, device=clean.device)
            timesteps = torch.randint(0, m.num_train_timesteps, (clean.shape[0],), device=clean.device)
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            with accelerator.accumulate(model):
                loss = torch.nn.functional.mse_loss(model(noisy, timesteps).sample.float(), noise)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if accelerator.sync_gradients:
                ema.step(model.parameters())
            times.append(time.perf_counter() - start)
            done += 1
            if done == warmup + steps:
                break
    return times[warmup:], sum(p.numel() for p in accelerator.unwrap_model(model).parameters())


def demo_cache(tmp: Path) -> Path:
    """A 64^2 cache of 256 procedural phantom subjects (seconds to make)."""
    from synthfair.index.ingest import ingest
    from synthfair.index.preprocess import PreprocessConfig, preprocess
    from synthfair.phantom.simulator import PhantomConfig
    from synthfair.phantom.source import write_source

    write_source(tmp / "phantom", n=256, size=64, workers=2, config=PhantomConfig(anatomy="procedural"))
    ingest("phantom", tmp / "phantom", tmp / "index")
    preprocess(tmp / "index", tmp / "cache-64", PreprocessConfig(size=64))
    return tmp / "cache-64"


def report(name: str, times: list[float], batch: int, params: int) -> None:
    per_step = statistics.median(times)
    print(
        f"{name:<18} {params / 1e6:>7.2f} {batch:>6} {per_step:>8.2f} {batch / per_step:>9.1f} "
        f"{min(times):>6.2f} {max(times):>6.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "phantom-base-64.yaml")
    parser.add_argument("--data", type=Path, default=ROOT / "demo" / "cache-64")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    from synthfair.model.diffusion import DiffusionModel
    from synthfair.model.train import load_train_config

    config = load_train_config(args.config)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; config {args.config.name}")
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data if (args.data / "manifest.json").is_file() else demo_cache(Path(tmp))
        print(f"data: {data}; {args.steps} timed steps after {args.warmup} warm-up steps")
        print(f"{'loop':<18} {'params':>7} {'batch':>6} {'s/step':>8} {'images/s':>9} {'min':>6} {'max':>6}")
        params = sum(p.numel() for p in DiffusionModel.create(config.model).unet.parameters())
        report("synthfair", synthfair_loop(config, data, args.warmup, args.steps), config.batch_size, params)
        times, params = diffusers_loop(config, data, args.warmup, args.steps)
        report("diffusers example", times, config.batch_size, params)


if __name__ == "__main__":
    main()
