"""CLI of the demo: ``mixture demo [-o OUT] [--scale S] [--seeds N] [--threads T]`` (docs/demo.md).

Cheap to import (argparse only): the demo's data, the sweep and Composer are imported inside the handler.
Ctrl-C or ``kill`` (SIGTERM) stops the demo cleanly: the run being trained is marked ``stopped`` and
``make demo`` again continues from its newest checkpoint (at most 40 batches back).
"""

from __future__ import annotations

import argparse


def _demo(args: argparse.Namespace) -> int:
    import os
    import signal
    import time

    started = time.monotonic()

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep instead of spinning
    from trainer.demo.study import cpu_threads

    threads = cpu_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)
    from trainer.demo.study import run_demo
    from trainer.demo.summary import summary

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)  # kill: stop like Ctrl-C (training stops between batches)
    print(f"[demo] {threads} torch thread(s) (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)",
          flush=True)
    try:
        result = run_demo(args.out, scale=args.scale, questions=args.questions, seeds=args.seeds,
                          say=lambda line: print(line, flush=True), started=started)
    except KeyboardInterrupt:
        print("\n[demo] stopped. Run it again (`make demo`) to continue: finished runs are kept and the run "
              "that was training resumes from its newest checkpoint.", flush=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print()
    print(summary(result), flush=True)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``demo``."""
    p = subparsers.add_parser(
        "demo", help="the paper's introduction-point study in miniature: data, sweep, training, report",
        description="Make the embedded demo data, train a tiny VLM per image introduction point (0/40/80/100% "
        "of the text plan) from one shared text-only trunk, measure each (VQA with standard errors, the "
        "answer prior, caption loss with right vs shuffled images, text loss before and after fine-tuning) and "
        "write OUT/summary.json, OUT/figure.png and a comparison report. Re-running reuses the data and every "
        "finished run; an interrupted run continues from its newest checkpoint.")
    p.add_argument("-o", "--out", default="out/demo", help="demo directory (default: out/demo)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiplier of the data and the text plan, in (0, 1] (default 1.0; CI runs 0.05)")
    p.add_argument("--questions", type=int, help="VQA questions per model (default: the packaged run.yaml's, 1200)")
    p.add_argument("--seeds", type=int, default=1,
                   help="model seeds, each training the whole sweep (default 1; the paper used 2)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default 1: the demo's tiny matrix products gain nothing from a second thread)")
    p.set_defaults(func=_demo)
