"""``ray job submit ... -- python -m jobs.sweep --config configs/sweep/radar.yaml [k=v ...]``"""

from jobs.common import parser, run
from spdnas.cli import parse_with_overrides

if __name__ == "__main__":
    raise SystemExit(run("sweep", parse_with_overrides(parser(__doc__))))
