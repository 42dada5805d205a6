"""CPU time of one claims-protocol run per method family: training and the 10,000-task cached test.

Prints times only (never an accuracy: the protocol's results must not be seen before it is
committed). Each family's representative is trained for ``--tasks`` tasks with one torch
thread, then evaluated on 10,000 test tasks from its feature cache; ``cpu`` is the process's
CPU time (user + system), which on a machine shared with other work grows far less than the
wall-clock time. Two lengths of the same family (e.g. ``--tasks 60`` and ``--tasks 240``) give
the per-task slope and the fixed cost, from which ``results/PROTOCOL.md`` derives its budget.

    python benchmarks/bench_claims_cost.py --out /tmp/claims_cost strm prototype trx mastaf
    python benchmarks/bench_claims_cost.py --out /tmp/claims_cost240 --tasks 240 strm
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import torch

FAMILIES = {"strm": ("strm_table1", "STRM"), "prototype": ("strm_table1", "Prototypes"), "trx": ("strm_table1", "TRX"),
            "mastaf": ("mastaf_ablations", "MASTAF"), "sa_sa": ("strm_mechanisms", "SA/SA"),
            "jnt2": ("strm_joint", "Jnt-ST (2 l)"), "strm_k1": ("strm_shots", "STRM K=1")}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="+", choices=sorted(FAMILIES))
    parser.add_argument("--tasks", type=int, default=60, help="training tasks per run")
    parser.add_argument("--test-tasks", type=int, default=10_000)
    parser.add_argument("--out", type=Path, required=True, help="a new folder for the timing runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from fsvid.engine import evaluate_run, train
    from fsvid.experiments.definitions import expand

    print(f"{'family':10s} {'tasks':>5s} {'train cpu s':>11s} {'train wall s':>12s} {'test cpu s':>10s} "
          f"{'test wall s':>11s} {'load':>5s}")
    for name in args.families:
        sweep, variant = FAMILIES[name]
        budget = [f"train.tasks={args.tasks}", f"train.val_every={args.tasks}", "train.val_tasks=20",
                  f"train.checkpoint_every={args.tasks}"]
        run = expand(sweep, variants=[variant], overrides=budget, output=args.out)[0]
        wall, cpu = time.time(), cpu_seconds()
        train(run.config, resume=True, progress=False)
        train_wall, train_cpu = time.time() - wall, cpu_seconds() - cpu
        wall, cpu = time.time(), cpu_seconds()
        evaluate_run(run.run_dir, tasks=args.test_tasks, progress=False, cache="auto")
        print(f"{name:10s} {args.tasks:5d} {train_cpu:11.1f} {train_wall:12.1f} {cpu_seconds() - cpu:10.1f} "
              f"{time.time() - wall:11.1f} {os.getloadavg()[0]:5.1f}", flush=True)


if __name__ == "__main__":
    main()
