"""``ray job submit --working-dir . -- python -m jobs.search --config configs/radar.yaml [k=v ...]``"""

from jobs.common import parser, run
from spdnas.cli import parse_with_overrides

if __name__ == "__main__":
    raise SystemExit(run("search", parse_with_overrides(parser(__doc__))))
