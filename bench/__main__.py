"""`python -m bench [GROUP ...]`: run the benchmarks, print a table, update bench/results.json."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

from bench import report, suite, targets
from bench.figures import Load

logger = logging.getLogger("bench")

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    defaults = Load()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "groups", nargs="*", metavar="GROUP", help=f"groups to run (default: all of {', '.join(suite.NAMES)})"
    )
    parser.add_argument(
        "--warmup", type=float, default=defaults.warmup_s, help="warm-up seconds before counting"
    )
    parser.add_argument(
        "--duration", type=float, default=defaults.duration_s, help="seconds of each rate measurement"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=defaults.repeats,
        help="repeats of the measurements compared with the peers (median reported)",
    )
    parser.add_argument("--results", type=Path, default=report.RESULTS, help="results file to merge into")
    return parser.parse_args(argv)


async def run_stoppable(groups: list[suite.Group], load: Load) -> suite.Outcome:
    """`suite.run`, cancelled by SIGTERM as by Ctrl-C, so every child it started is stopped first."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await suite.run(groups, load)


def main(argv: list[str] | None = None) -> int:
    """Run the named groups (and what they require) and report; the exit status says whether all ran."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="bench %(asctime)s %(message)s", datefmt="%H:%M:%S"
    )
    try:
        groups = suite.resolve(args.groups)
    except suite.UnknownGroupError as exc:
        print(exc, file=sys.stderr)
        return 2
    started = time.perf_counter()
    load = Load(warmup_s=args.warmup, duration_s=args.duration, repeats=args.repeats)
    try:
        outcome = asyncio.run(run_stoppable(groups, load))
    except (KeyboardInterrupt, asyncio.CancelledError):
        logger.warning("interrupted; %s left unchanged", args.results)
        return EXIT_INTERRUPTED
    elapsed = time.perf_counter() - started
    if outcome.results:
        print(report.table(outcome.results))
        print()
        print(targets.table({f.name: f.value for result in outcome.results for f in result.figures}))
        figures = [figure for result in outcome.results for figure in result.figures]
        count = report.merge_results(args.results, suite.NAMES, (r.group for r in outcome.results), figures)
        logger.info("wrote %d figures (%d measured now) to %s", count, len(figures), args.results)
    logger.info("whole run: %.1f s", elapsed)
    if outcome.failed:
        logger.error("failed or not run: %s", ", ".join(outcome.failed))
    return EXIT_FAILED if outcome.failed else 0


if __name__ == "__main__":
    sys.exit(main())
