"""``ray job submit --working-dir . -- python -m jobs.search --config configs/radar.yaml [k=v ...]``"""

from jobs.common import parser, run

if __name__ == "__main__":
    raise SystemExit(run("search", parser(__doc__).parse_args()))
