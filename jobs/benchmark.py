"""``ray job submit ... -- python -m jobs.benchmark --config configs/benchmark/radar-jv.yaml [k=v ...]``"""

from jobs.common import parser, run

if __name__ == "__main__":
    raise SystemExit(run("benchmark", parser(__doc__).parse_args()))
