"""Summarise what `sitecustomize.py` here wrote: `summary.py DIRECTORY`."""

import statistics
import sys
from collections import Counter
from pathlib import Path


def quantiles(values: list[float]) -> str:
    values = sorted(values)
    at = lambda p: values[min(len(values) - 1, int(p / 100 * len(values)))]  # noqa: E731
    return (f"p50 {at(50):.1f} ms, p90 {at(90):.1f} ms, p99 {at(99):.1f} ms, mean {statistics.mean(values):.1f} ms, "
            f"total {sum(values) / 1000:.1f} s")


def main(directory: Path) -> None:
    holds, waits, statements = [], [], Counter[int]()
    for path in directory.glob("*.txt"):
        for line in path.read_text().splitlines():
            ms, _, count = line.split()
            holds.append(float(ms))
            statements[int(count)] += 1
    for path in directory.glob("*.wait"):
        waits += [float(line) for line in path.read_text().splitlines()]
    if not holds:
        print("no appends recorded (PostgreSQL only; AUDIT_HOLD_DIR and PYTHONPATH set?)")
        return
    print(f"{len(holds)} appends; head held {quantiles(holds)}")
    print(f"waited for it: {quantiles(waits)}")
    print("statements while held (COMMIT not counted):", dict(sorted(statements.items())))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
