"""The plain script a new user would write: timm ResNet + PML SupConLoss + PML MPerClassSampler.

    python benchmarks/pml_baseline.py DATA/train --out model.pt [--epochs 10 --batch-size 128 ...]

Trains on ``DATA/train/<class>/<image>`` (grayscale) with a mild augmentation (random crop +
small rotation) and saves the backbone's state dict; retrieval uses its pooled features.
Kept deliberately plain (no supcon import) as the baseline of ``bench_quality.py``.
"""

import argparse
import random

import numpy as np
import timm
import torch
from pytorch_metric_learning import losses, samplers
from torchvision import datasets, transforms

parser = argparse.ArgumentParser()
parser.add_argument("train_dir")
parser.add_argument("--out", required=True)
parser.add_argument("--backbone", default="resnet18")
parser.add_argument("--image-size", type=int, default=32)
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=128)
parser.add_argument("--m", type=int, default=4)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--weight-decay", type=float, default=1e-4)
parser.add_argument("--temperature", type=float, default=0.1)
parser.add_argument("--threads", type=int, default=0)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument(
    "--steps-per-epoch", type=int, default=0, help="batches per epoch (0: len(dataset) // batch)"
)
args = parser.parse_args()
torch.manual_seed(args.seed)
np.random.seed(args.seed)  # PML's MPerClassSampler draws from NumPy's global generator
random.seed(args.seed)
if args.threads:
    torch.set_num_threads(args.threads)

augment = transforms.Compose(
    [
        transforms.Grayscale(1),
        transforms.RandomResizedCrop(args.image_size, scale=(0.8, 1.0)),
        transforms.RandomRotation(10, fill=255),
        transforms.ToTensor(),
        transforms.Normalize((0.5,), (0.5,)),
    ]
)
dataset = datasets.ImageFolder(args.train_dir, transform=augment)
steps = args.steps_per_epoch or len(dataset) // args.batch_size
sampler = samplers.MPerClassSampler(
    dataset.targets, m=args.m, batch_size=args.batch_size,
    length_before_new_iter=steps * args.batch_size,
)  # fmt: skip
loader = torch.utils.data.DataLoader(
    dataset, batch_size=args.batch_size, sampler=sampler, drop_last=True
)
model = timm.create_model(args.backbone, pretrained=False, num_classes=0, in_chans=1)
loss_fn = losses.SupConLoss(temperature=args.temperature)
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs * len(loader))

model.train()
for epoch in range(args.epochs):
    total = 0.0
    for images, labels in loader:
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item()
    print(f"epoch {epoch + 1}/{args.epochs}  loss {total / len(loader):.4f}", flush=True)
torch.save(model.state_dict(), args.out)
