"""The long fuzz campaign (``scripts/fuzz``): every target of ``targets.py``, 100,000 inputs each
by default, spread over the machine's cores; a summary table at the end; exit status 1 if any
input crashed.

Each target's inputs run in chunks of ``--chunk`` inputs, each chunk one hypothesis run (no
shrinking: a crash is reported with its input and the campaign goes on) whose seed is the
campaign's seed plus the chunk's number; the seed is printed first. A crash report names its
chunk seed: ``scripts/fuzz --only TARGET --seed CHUNK_SEED --inputs CHUNK`` replays that chunk.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

DEFAULT_INPUTS = 100_000
DEFAULT_CHUNK = 5_000
MAX_REPORTED = 3


@dataclass
class Tally:
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    crashed: int = 0
    seconds: float = 0.0
    crashes: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.inputs += other.inputs
        self.accepted += other.accepted
        self.refused += other.refused
        self.crashed += other.crashed
        self.seconds += other.seconds
        self.crashes.extend(other.crashes[: max(0, MAX_REPORTED - len(self.crashes))])


def run_chunk(job: tuple[str, int, int]) -> tuple[str, int, Tally]:
    """``size`` inputs of target ``name`` from seed ``chunk_seed``, in this process."""
    name, chunk_seed, size = job
    warnings.simplefilter("ignore")  # hypothesis warns about the repr of huge inputs
    from hypothesis import HealthCheck, Phase, given, seed, settings

    from tests.fuzz.targets import BY_NAME

    target = BY_NAME[name]
    tally = Tally()

    @seed(chunk_seed)
    @settings(max_examples=size, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
    @given(target.inputs)
    def chunk(value: Any) -> None:
        tally.inputs += 1
        try:
            accepted = target.check(value)
        except Exception as exc:
            tally.crashed += 1
            if len(tally.crashes) < MAX_REPORTED:
                where = traceback.extract_tb(exc.__traceback__)[-1]
                tally.crashes.append(
                    f"{type(exc).__name__}: {str(exc)[:300]}\n"
                    f"    at {where.filename}:{where.lineno} ({where.name})\n"
                    f"    input: {repr(value)[:400]}\n"
                    f"    replay: scripts/fuzz --only {name} --seed {chunk_seed} --inputs {size}")
            return
        if accepted:
            tally.accepted += 1
        else:
            tally.refused += 1

    started = time.perf_counter()
    chunk()
    tally.seconds = time.perf_counter() - started
    return name, chunk_seed, tally


def main(argv: list[str] | None = None) -> int:
    from tests.fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=DEFAULT_INPUTS,
                        help=f"inputs per target (default {DEFAULT_INPUTS})")
    parser.add_argument("--seed", type=int, help="campaign seed (default: random, printed)")
    parser.add_argument("--only", help="comma-separated target names (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="processes (default: one per core)")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK,
                        help=f"inputs per hypothesis run (default {DEFAULT_CHUNK})")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)

    if args.list:
        for target in TARGETS:
            print(f"{target.name:20} {target.what}")
        return 0
    names = [t.name for t in TARGETS]
    if args.only:
        wanted = args.only.split(",")
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"unknown targets {unknown}; see --list")
        names = [n for n in names if n in wanted]
    base_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    chunk = max(1, min(args.chunk, args.inputs))
    jobs: list[tuple[str, int, int]] = []
    for name in names:
        left, number = args.inputs, 0
        while left > 0:
            jobs.append((name, base_seed + number, min(chunk, left)))
            left -= chunk
            number += 1
    print(f"fuzz campaign: seed {base_seed}, {args.inputs} inputs x {len(names)} targets, "
          f"{args.jobs} processes (replay: scripts/fuzz --seed {base_seed} "
          f"--inputs {args.inputs}{' --only ' + args.only if args.only else ''})", flush=True)

    totals = {name: Tally() for name in names}
    chunks_left = {name: sum(1 for j in jobs if j[0] == name) for name in names}
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    # a fresh process every few chunks: hypothesis keeps what it generated for a run's life
    with context.Pool(args.jobs, maxtasksperchild=4) as pool:
        for name, _, tally in pool.imap_unordered(run_chunk, jobs):
            totals[name].add(tally)
            chunks_left[name] -= 1
            if tally.crashed:
                print(f"  {name}: {tally.crashed} crash(es) in a chunk", flush=True)
            if chunks_left[name] == 0:
                t = totals[name]
                print(f"  {name:20} done: {t.inputs} inputs, {t.crashed} crashes", flush=True)
    elapsed = time.perf_counter() - started

    print()
    print(f"{'target':20} {'inputs':>9} {'accepted':>9} {'typed rejections':>17} "
          f"{'crashes':>8} {'inputs/s':>9}")
    for name in names:
        t = totals[name]
        rate = t.inputs / t.seconds if t.seconds else 0.0
        print(f"{name:20} {t.inputs:>9} {t.accepted:>9} {t.refused:>17} {t.crashed:>8} "
              f"{rate:>9.0f}")
    all_inputs = sum(t.inputs for t in totals.values())
    all_crashes = sum(t.crashed for t in totals.values())
    print(f"{'all':20} {all_inputs:>9} {sum(t.accepted for t in totals.values()):>9} "
          f"{sum(t.refused for t in totals.values()):>17} {all_crashes:>8} "
          f"{all_inputs / elapsed if elapsed else 0:>9.0f}")
    print(f"seed {base_seed}; {elapsed:.0f} s with {args.jobs} processes")
    for name in names:
        for report in totals[name].crashes:
            print(f"\nCRASH in {name}: {report}")
    return 1 if all_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
