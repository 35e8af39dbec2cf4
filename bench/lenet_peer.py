#!/usr/bin/python3
"""PyTorch peer for bench/accuracy.sh: LeNet-5 trained with Adam on Fashion-MNIST (IDX files,
raw or gzipped), the usual small CNN a user would try first. Prints one line:
  peer lenet5 <test accuracy %> <training seconds> <epochs>
Training seconds cover the epochs only (not loading or testing), as cnnelm's train_s does.
Re-executes itself with tcmalloc preloaded when installed (as ../shared/bench/torch_peer.py
does: PyTorch is much faster with it on small networks).
usage: lenet_peer.py [--data DIR] [--epochs 5] [--threads 2] [--batch 64] [--seed 1]
"""
import argparse, gzip, os, sys, time

TCMALLOC = '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4'
if os.path.exists(TCMALLOC) and 'tcmalloc' not in os.environ.get('LD_PRELOAD', ''):
    os.environ['LD_PRELOAD'] = TCMALLOC
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(path):
    with open(path, 'rb') as f:
        raw = f.read()
    if raw[:2] == b'\x1f\x8b':
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = nn.Conv2d(6, 16, 5)
        self.f1 = nn.Linear(16 * 5 * 5, 120)
        self.f2 = nn.Linear(120, 84)
        self.f3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.relu(self.f1(x.flatten(1)))
        return self.f3(F.relu(self.f2(x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
    ap.add_argument('--epochs', type=int, default=5)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    def load(prefix):
        x = read_idx(os.path.join(a.data, prefix + '-images-idx3-ubyte.gz'))
        y = read_idx(os.path.join(a.data, prefix + '-labels-idx1-ubyte.gz'))
        return torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1), torch.from_numpy(y.astype(np.int64))

    xtr, ytr = load('train')
    xte, yte = load('t10k')
    model = LeNet5()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), a.batch):
            idx = perm[i:i + a.batch]
            opt.zero_grad()
            F.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
            opt.step()
    train_s = time.perf_counter() - t0
    with torch.no_grad():
        pred = torch.cat([model(xte[i:i + 1000]).argmax(1) for i in range(0, len(xte), 1000)])
    acc = 100.0 * (pred == yte).float().mean().item()
    print(f'peer lenet5 {acc:.2f} {train_s:.2f} {a.epochs}')


if __name__ == '__main__':
    main()
