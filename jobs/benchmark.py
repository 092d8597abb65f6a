"""``ray job submit ... -- python -m jobs.benchmark --config configs/benchmark/radar-jv.yaml [k=v ...]``"""

from jobs.common import parser, run
from spdnas.cli import parse_with_overrides

if __name__ == "__main__":
    raise SystemExit(run("benchmark", parse_with_overrides(parser(__doc__))))
