"""``ray job submit ... -- python -m jobs.sweep --config configs/sweep/radar.yaml [k=v ...]``"""

from jobs.common import parser, run

if __name__ == "__main__":
    raise SystemExit(run("sweep", parser(__doc__).parse_args()))
