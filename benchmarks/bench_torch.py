"""Training-step overhead of torch_hooks on a small MLP (batch 256, CPU).

    python benchmarks/bench_torch.py [--quick] [--steps N] [--reps R] [--threads T]

Modes, run interleaved (a shuffled order per repetition, so drift and
neighbours' load hit every mode alike):

- ``none``: no hooks;
- ``parent``: ``instrument(model)`` - one forward record per step;
- ``layers``: ``instrument(model, what="children")`` - plus one record per submodule call;
- ``loops``: ``parent`` plus ``batches(...)`` - a batch record per step too.

Records go to the default embedded pipeline (direct transport into a
temporary LMDB store, telemetry on), inside a ``Flowcept`` workflow, i.e. the
no-service default a user gets. A step is forward + cross-entropy +
backward + SGD step, timed one by one. Printed per mode: the median step time
over all steps of all repetitions and its ratio to ``none``, the 90th
percentile, and the ratio of the medians of per-block medians (a second view
that must agree). Target: ``parent`` at most 1.03.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time


def build(hidden: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(256, 784)
    y = torch.randint(0, 10, (256,))
    return model, opt, x, y


def run_mode(mode: str, model, opt, x, y, steps: int) -> list[float]:
    """Seconds of each of ``steps`` training steps in ``mode`` (the loader's own time included for loops)."""
    import torch.nn.functional as F

    import torch_hooks as th

    if mode == "parent" or mode == "loops":
        th.instrument(model, what="parent")
    elif mode == "layers":
        th.instrument(model, what="children")
    data = [(x, y)] * steps
    loader = th.batches(data) if mode == "loops" else data
    out = []
    clock = time.perf_counter
    try:
        t0 = clock()
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            t1 = clock()
            out.append(t1 - t0)
            t0 = t1
        return out
    finally:
        th.uninstrument(model)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few steps and repetitions (smoke run)")
    ap.add_argument("--steps", type=int, default=None, help="steps per block (default 200; quick 50)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions of every mode (default 15; quick 4)")
    ap.add_argument("--hidden", type=int, default=256, help="hidden width of the MLP (default 256)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args(argv)
    steps = args.steps or (50 if args.quick else 200)
    reps = args.reps or (4 if args.quick else 15)

    tmp = tempfile.mkdtemp(prefix="bench-torch-")
    os.environ["FLOWCEPT_STORE_LMDB_PATH"] = os.path.join(tmp, "lmdb")
    os.environ["FLOWCEPT_TRANSPORT_STATS_DIR"] = os.path.join(tmp, "stats")
    import torch

    from flowcept_dist import Flowcept

    if args.threads:
        torch.set_num_threads(args.threads)
    model, opt, x, y = build(args.hidden)
    modes = ["none", "parent", "layers", "loops"]
    times: dict[str, list[float]] = {m: [] for m in modes}  # every step
    blocks: dict[str, list[float]] = {m: [] for m in modes}  # median step of each block
    rng = random.Random(1)
    with Flowcept(workflow_name="bench_torch") as fc:
        for mode in modes:  # warm-up: allocator, kernels, first records and LMDB pages
            run_mode(mode, model, opt, x, y, max(10, steps // 5))
        for _ in range(reps):
            order = modes[:]
            rng.shuffle(order)
            for mode in order:
                step_times = run_mode(mode, model, opt, x, y, steps)
                times[mode].extend(step_times)
                blocks[mode].append(statistics.median(step_times))
    stats = fc.stats
    n_params = sum(p.numel() for p in model.parameters())
    print(f"bench_torch: MLP 784-{args.hidden}-{args.hidden}-10 ({n_params} parameters), batch 256, "
          f"{steps} steps x {reps} reps per mode, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"python {sys.version.split()[0]}")
    base = statistics.median(times["none"])
    base_blocks = statistics.median(blocks["none"])
    print(f"{'mode':<8} {'median ms/step':>15} {'ratio':>7} {'p90 ms/step':>12} {'ratio of block medians':>23}")
    for mode in modes:
        med = statistics.median(times[mode])
        p90 = statistics.quantiles(times[mode], n=10)[-1]
        print(f"{mode:<8} {med * 1e3:>15.3f} {med / base:>7.3f} {p90 * 1e3:>12.3f} "
              f"{statistics.median(blocks[mode]) / base_blocks:>23.3f}")
    ratio = statistics.median(times["parent"]) / base
    print(f"records exported {stats.exported}, dropped {stats.dropped_total}")
    print(f"parent-only overhead: {100 * (ratio - 1):+.1f}% (target <= +3%): {'OK' if ratio <= 1.03 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
