"""``ray job submit ... -- python -m jobs.retrain --config configs/radar.yaml --genotype FILE [k=v ...]``"""

from jobs.common import parser, run

if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--genotype", required=True, help="genotype JSON (local path) or 'radar'/'hdm05'")
    args = p.parse_args()
    raise SystemExit(run("train", args, "--genotype", args.genotype))
