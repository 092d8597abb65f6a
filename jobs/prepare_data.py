"""``python -m jobs.prepare_data --dataset radar-synth --out s3://bucket/datasets/radar-synth``

Makes a dataset with one of the registered builders and writes it to a local folder or S3.
Run it where you hold write access to the datasets: cluster nodes may only read ``datasets/``
(infra/cloudformation), so on AWS run it on your own machine with your own credentials.
``--overwrite`` replaces an existing dataset.
"""

import argparse
import sys

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", required=True, help="builder name (see `spdnas data make --help`)")
    p.add_argument("--out", required=True, help="local folder or s3://bucket/prefix")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="builder parameter")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    args = p.parse_args()
    from spdnas.cli import main

    sys.stdout.reconfigure(line_buffering=True)
    options = [x for kv in args.param for x in ("--param", kv)] + ["--overwrite"] * args.overwrite
    raise SystemExit(main(["data", "make", args.dataset, args.out, *options]))
