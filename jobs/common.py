"""Shared argument handling of the ``ray job submit`` entrypoints.

Inside a Ray job, ``RAY_ADDRESS`` is set, so the runs use the cluster they were submitted to.
``SPDNAS_STORAGE`` (e.g. ``s3://bucket/experiments``) becomes ``runtime.output_dir`` and
``SPDNAS_DATA`` (e.g. ``s3://bucket/datasets``) the folder of the datasets (the experiment's and
each benchmark dataset's keep their last path component), unless
``--storage``/``--data`` or explicit ``key=value`` overrides say otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="experiment YAML (configs/...)")
    p.add_argument("--storage", default=os.environ.get("SPDNAS_STORAGE"),
                   help="where runs are written (default: $SPDNAS_STORAGE, else the config's)")
    p.add_argument("--data", default=os.environ.get("SPDNAS_DATA"),
                   help="folder holding the datasets (default: $SPDNAS_DATA, else the config's)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over instead of resuming an earlier run of the same name")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return p


def cli_arguments(args: argparse.Namespace, command: str) -> list[str]:
    """``spdnas <command>`` arguments: config, storage and data folder as overrides, then the
    user's. A benchmark gets only its ``benchmark.datasets`` moved (it refuses ``data.*``)."""
    from spdnas.config import load_config

    extra = []
    if args.storage:
        extra.append(f"runtime.output_dir={args.storage}")
    if args.data:
        config = load_config(args.config, args.overrides)

        def moved(uri: str) -> str:
            return f"{args.data.rstrip('/')}/{uri.rstrip('/').rsplit('/', 1)[-1]}"

        if command != "benchmark":
            extra.append(f"data.uri={moved(config.data.uri)}")
        datasets = [dataclasses.asdict(d) for d in config.benchmark.datasets]
        for entry in datasets:
            entry["data"]["uri"] = moved(entry["data"]["uri"])
        # JSON is YAML that quotes every string: '1e3' or '-.5' as text stays text
        extra.append(f"benchmark.datasets={json.dumps(datasets)}")
    return ["--config", args.config, *extra, *args.overrides]


def run(command: str, args: argparse.Namespace, *options: str) -> int:
    from spdnas.cli import main
    from spdnas.config import ConfigError

    sys.stdout.reconfigure(line_buffering=True)
    try:
        arguments = cli_arguments(args, command)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.no_resume:
        options = (*options, "--no-resume")
    return main([command, *options, *arguments])
