"""``ray job submit ... -- python -m jobs.retrain --config configs/radar.yaml --genotype FILE [k=v ...]``"""

from jobs.common import parser, run
from spdnas.cli import parse_with_overrides

if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--genotype", required=True,
                   help="genotype JSON (local path, or s3://… such as a search's genotype.json in the "
                   "cluster's storage) or 'radar'/'hdm05'")
    args = parse_with_overrides(p)
    raise SystemExit(run("train", args, "--genotype", args.genotype))
