"""SegNet vs FCN-8s at CamVid's size: parameters, upsampling memory, training memory, MACs, time.

    python benchmarks/segnet_memory.py [--size 360 480] [--repeats 3] [--classes 11]

What notebook 02 shows once, with repeated timings. Everything but the time is counted on
PyTorch's meta device (exact shapes and dtypes, nothing allocated), so it is deterministic:

* parameters of the full-width networks;
* bytes a decoder keeps to upsample: SegNet's int64 indices, the paper's 2-bit indices,
  U-Net-style pre-pool feature maps, FCN-8s's pool3 + pool4;
* bytes autograd saves for the backward pass of one training image (weights excluded);
* multiply-accumulates (``FlopCounterMode``, convolutions);
* then the median wall-clock time of a full-width forward pass on this machine's CPU (or GPU).

Measured here (2-core CPU shared with other jobs, torch 2.x, 2026-11-27, defaults):

    SegNet   29,449,355 params  indices int64 42.3 MB (2-bit 1.3 MB, U-Net-style maps 84.4 MB)
             saved for backward 812 MB   106.7 GMACs
    FCN-8s  134,348,929 params  pool3 + pool4 4.4 MB
             saved for backward 287 MB    78.0 GMACs

Forward times on that shared CPU varied from run to run (SegNet 3.5-5.6 s, FCN-8s 2.6-4.5 s per
360x480 image with 2 threads; SegNet always the slower); rerun on an idle machine before quoting
them.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

import segedu
from segedu import fcn, segnet
from segedu.deploy import measure_latency


def mb(*tensors: torch.Tensor) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 1e6


def saved_for_backward(model: torch.nn.Module, x: torch.Tensor) -> float:
    """MB of activations autograd keeps for the backward pass (weights excluded)."""
    weights, saved = {id(p) for p in model.parameters()}, {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in weights:
            saved[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train()(x)
    return sum(saved.values()) / 1e6


def gmacs(model: torch.nn.Module, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops() / 2e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, nargs=2, default=[360, 480])
    parser.add_argument("--classes", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = tuple(args.size)

    with torch.device("meta"):
        nets = {"SegNet": segnet.segnet(args.classes), "FCN-8s": fcn.fcn8s(args.classes)}
        x = torch.empty(1, 3, *size)
        inter = nets["SegNet"].forward_intermediates(x)
        fcn_maps = nets["FCN-8s"].backbone.forward_features(fcn.pad_to_multiple(x, 32))
        indices = [inter[f"indices{s}"] for s in range(1, 6)]
        pre_pool = [inter[f"unpool{s}"] for s in range(1, 6)]
        print(f"upsampling memory at {size[0]}x{size[1]}:")
        print(f"  SegNet indices, int64:       {mb(*indices):8.2f} MB")
        print(f"  SegNet indices, 2 bits:      {sum(i.numel() for i in indices) / 4e6:8.2f} MB")
        print(f"  U-Net-style pre-pool maps:   {mb(*pre_pool):8.2f} MB")
        print(f"  FCN-8s pool3 + pool4:        {mb(fcn_maps['pool3'], fcn_maps['pool4']):8.2f} MB")
        for name, model in nets.items():
            print(f"{name}: {segedu.count_parameters(model):,} parameters, "
                  f"{saved_for_backward(model, x):.0f} MB saved for backward, "
                  f"{gmacs(model, x):.1f} GMACs")

    device = segedu.get_device(verbose=False)
    for name, factory in (("SegNet", segnet.segnet), ("FCN-8s", fcn.fcn8s)):
        model = factory(args.classes).to(device).eval()
        x = torch.randn(1, 3, *size, device=device)
        with torch.no_grad():
            latency = measure_latency(lambda m=model, x=x: m(x), warmup=1,
                                      repeats=args.repeats, device=device)
        print(f"{name}: forward {latency.median / 1000:.3f} s (median of {args.repeats}) "
              f"on {device}, {latency.threads} threads")


if __name__ == "__main__":
    main()
