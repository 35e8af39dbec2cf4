#!/usr/bin/python3
"""hpelm peer for bench/accuracy.sh (only run where the hpelm package is installed): an ELM with
tanh neurons on raw pixels, the classic ELM baseline. Prints one line:
  peer hpelm <test accuracy %> <training seconds> <neurons>
usage: hpelm_peer.py [--data DIR] [--neurons 4000]
"""
import argparse, gzip, os, time

import numpy as np
import hpelm


def read_idx(path):
    with open(path, 'rb') as f:
        raw = f.read()
    if raw[:2] == b'\x1f\x8b':
        raw = gzip.decompress(raw)
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
    ap.add_argument('--neurons', type=int, default=4000)
    a = ap.parse_args()

    def load(prefix):
        x = read_idx(os.path.join(a.data, prefix + '-images-idx3-ubyte.gz'))
        y = read_idx(os.path.join(a.data, prefix + '-labels-idx1-ubyte.gz'))
        return x.reshape(len(x), -1).astype(np.float32) / 255.0, np.eye(10, dtype=np.float32)[y]

    xtr, ttr = load('train')
    xte, tte = load('t10k')
    elm = hpelm.ELM(xtr.shape[1], 10)
    elm.add_neurons(a.neurons, 'tanh')
    t0 = time.perf_counter()
    elm.train(xtr, ttr)
    train_s = time.perf_counter() - t0
    acc = 100.0 * np.mean(elm.predict(xte).argmax(1) == tte.argmax(1))
    print(f'peer hpelm {acc:.2f} {train_s:.2f} {a.neurons}')


if __name__ == '__main__':
    main()
