"""Training throughput and dataset memory: our loop against the seed's, side by side in one run.

Both loops train the same network (the real ``EmotionNet``: timm backbone + seed head) with the
same optimizer family and batch size on the same generated stacks (18 channels, 112 px):

  seed   the seed's way: every stack converted to float32 and normalised up front, augmented once
         at load (torchvision flip, affine, random erasing on the (C, H, W) tensor), a
         TensorDataset + shuffling DataLoader, contiguous (NCHW) tensors, Adam, full precision.
  ours   ``pipeline.train.loop.Trainer.train_epoch``: uint8 stacks, converted per batch, augmentation
         drawn fresh every batch (flip, affine, brightness/contrast, blur, erasing), channels_last,
         AdamW, gradient clipping. Timed twice: in fp32, and with ``--precision auto`` (bf16 autocast
         on CUDA, and on CPUs with native bf16 for the backbones it speeds up; else the same as fp32).

Each repeat times ``--steps`` optimizer steps of each loop after one untimed warm-up step, the
order alternating between repeats; the table shows median samples/s, their ratio, and the bytes
each loop holds for the dataset. Targets: ours >= 1.5x the seed's samples/s on CPU (>= 3x on a
GPU) with augmentation on, and at most a quarter of its dataset memory.

    python benchmarks/train_speed.py [--backbones mobilenetv3_large,efficientnetv2_s] [--size 112]
                                     [--channels 18] [--stacks 96] [--batch-size 32] [--steps 4]
                                     [--repeats 3] [--device auto]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from models.network import EmotionNet  # noqa: E402
from pipeline.train.loop import Trainer  # noqa: E402
from pipeline.train.parts import resolve_device  # noqa: E402
from pipeline.train.settings import TrainConfig  # noqa: E402
from stacks.settings import InputSettings  # noqa: E402
from tests.fixtures.stacks import make_stack_set  # noqa: E402


def seed_dataset(trainer: Trainer) -> TensorDataset:
    """The seed's preloading: float32, normalised, augmented once, kept for every epoch."""
    augment = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomAffine(degrees=10, translate=(0.1, 0.1)),
                          v2.RandomErasing(p=0.25)])
    images = torch.from_numpy(trainer.train_set.images[:]).float().div(255)
    images = torch.stack([augment(x) for x in images])
    images = (images - 0.5) / 0.5
    return TensorDataset(images, torch.from_numpy(trainer.train_set.labels))


def time_seed(trainer: Trainer, dataset: TensorDataset, steps: int, device: torch.device) -> float:
    """Samples per second of the seed's loop over ``steps`` steps (after one warm-up step)."""
    torch.manual_seed(0)
    model = EmotionNet(trainer.model_settings).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(dataset, batch_size=trainer.config.batch_size, shuffle=True, drop_last=True)
    model.train()
    done, started = 0, 0.0
    for step, (x, y) in enumerate(loader):
        if step == 1:
            _sync(device)
            started = time.perf_counter()
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done += len(y) if step >= 1 else 0
        if step == steps:
            break
    _sync(device)
    return done / (time.perf_counter() - started)


def time_ours(trainer: Trainer, steps: int, device: torch.device) -> float:
    trainer.train_epoch(1, max_batches=1)  # warm-up
    _sync(device)
    started = time.perf_counter()
    trainer.train_epoch(2, max_batches=steps)
    _sync(device)
    return steps * trainer.config.batch_size / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="mobilenetv3_large,efficientnetv2_s")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--channels", type=int, default=18)
    parser.add_argument("--stacks", type=int, default=96, help="training stacks generated (per class: / 3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4, help="timed optimizer steps per loop and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.stacks < args.batch_size * (args.steps + 1):
        parser.error("--stacks must cover --batch-size x (--steps + 1) samples")
    print(f"train_speed {time.strftime('%Y-%m-%d %H:%M')}  {platform.processor() or platform.machine()}  "
          f"torch {torch.__version__}  device {device}  threads {torch.get_num_threads()}")
    print(f"{args.channels} channels, {args.size} px, batch {args.batch_size}, {args.steps} timed steps x "
          f"{args.repeats} repeats, {args.stacks} stacks\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "stacks"
        make_stack_set(data, counts={"train": args.stacks // 3, "val": 2}, channels=args.channels, size=args.size)
        for backbone in args.backbones.split(","):
            trainers = {}
            for precision in ("fp32", "auto"):
                config = TrainConfig(data=data, name=f"{backbone}_{precision}", runs_dir=Path(tmp) / "runs",
                                     backbone=backbone, input=InputSettings(image_size=args.size),
                                     batch_size=args.batch_size, device=str(device), precision=precision,
                                     progress=False)
                trainers[precision] = Trainer(config)  # no logging set up here: its progress lines stay unshown
            auto_is_bf16 = trainers["auto"].bf16
            if not auto_is_bf16:
                del trainers["auto"]  # the same loop as fp32
            seed_data = seed_dataset(trainers["fp32"])
            speeds: dict[str, list[float]] = {"seed": [], **{k: [] for k in trainers}}
            for repeat in range(args.repeats):
                order = list(speeds) if repeat % 2 == 0 else list(reversed(speeds))
                for which in order:
                    if which == "seed":
                        speeds["seed"].append(time_seed(trainers["fp32"], seed_data, args.steps, device))
                    else:
                        speeds[which].append(time_ours(trainers[which], args.steps, device))
            seed_bytes = seed_data.tensors[0].element_size() * seed_data.tensors[0].nelement()
            medians = {k: statistics.median(v) for k, v in speeds.items()}
            rows.append((backbone, medians, auto_is_bf16, seed_bytes, trainers["fp32"].train_set.nbytes))
            print(f"{backbone}: " + "  ".join(f"{k} {[round(s, 1) for s in v]}" for k, v in speeds.items()))
    print("\n| backbone | seed samples/s | ours fp32 | ours --precision auto | best ours / seed | seed dataset MB "
          "| ours dataset MB | ours / seed memory |")
    print("|---|---|---|---|---|---|---|---|")
    for backbone, med, auto_is_bf16, seed_bytes, our_bytes in rows:
        auto = f"{med['auto']:.1f} (bf16, {med['auto'] / med['seed']:.2f}x)" if auto_is_bf16 else "= fp32"
        best = max(med.get("auto", 0.0), med["fp32"])
        print(f"| {backbone} | {med['seed']:.1f} | {med['fp32']:.1f} ({med['fp32'] / med['seed']:.2f}x) | {auto} "
              f"| {best / med['seed']:.2f}x | {seed_bytes / 2**20:.1f} | {our_bytes / 2**20:.1f} "
              f"| {our_bytes / seed_bytes:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
