"""``spdnas data ...``: make, validate, inspect, upload, download and list datasets."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _parse_params(pairs: list[str]) -> dict:
    """``["snr_db=0", "class_balance=[1,1,2]", "raw_dir=/tmp/x"]`` → dict (JSON values, else str)."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _make(args: argparse.Namespace) -> int:
    from spdnas.data import make_dataset

    dataset = make_dataset(args.name, args.out, overwrite=args.overwrite, progress=True,
                           **_parse_params(args.param))
    print(f"wrote {len(dataset)} samples ({args.name}, n = {dataset.n}, {dataset.num_classes} classes) "
          f"to {args.out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    import torch

    from spdnas.data import validate_dataset

    report = validate_dataset(args.uri, repair=args.repair, dtype=getattr(torch, args.dtype), progress=True)
    print(f"OK: {report['rows']} rows in {report['files']} files passed every check "
          f"(positive definiteness judged for {args.dtype})")
    if report["repairable"]:
        print(f"{report['repairable']} rows pass only after repair (read them with repair=True)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from spdnas.data.storage import Folder

    manifest = Folder(args.uri).read_manifest()
    meta = manifest["meta"]
    classes = meta["class_names"]
    size = sum(f["bytes"] for f in manifest["files"])
    print(f"dataset  {meta['name']} (schema v{manifest['schema_version']}, {manifest['dtype']}, "
          f"{manifest['encoding']})")
    print(f"n        {meta['n']}")
    print(f"rows     {manifest['num_rows']} in {len(manifest['files'])} files ({size / 2**20:.1f} MiB)")
    print(f"source   {meta['source']}")
    print(f"licence  {meta['licence']}")
    factor = meta.get("provenance", {}).get("scale_factor")
    if factor is not None:
        print(f"scale    every matrix multiplied by {factor:.6g} at import (--param scale=)")
    print(f"classes  {len(classes)}")
    width = max(8, *(len(c) for c in classes))
    splits = list(manifest["counts"])
    print(f"{'class':<{width}} " + " ".join(f"{s:>7}" for s in [*splits, "total"]))
    for k, name in enumerate(classes):
        row = [manifest["counts"][s][k] for s in splits]
        print(f"{name:<{width}} " + " ".join(f"{c:>7}" for c in [*row, sum(row)]))
    totals = [sum(manifest["counts"][s]) for s in splits]
    print(f"{'total':<{width}} " + " ".join(f"{c:>7}" for c in [*totals, sum(totals)]))
    groups = manifest.get("groups")
    if groups:
        shared = groups["in_several_splits"]
        print(f"{'groups':<{width}} " + " ".join(f"{groups['per_split'].get(s, 0):>7}" for s in splits)
              + f"  ({shared} in more than one split{': not a subject-wise split' * bool(shared)})")
    return 0


def _upload(args: argparse.Namespace) -> int:
    from spdnas.data import s3

    keys = s3.upload(args.local, args.uri, overwrite=args.overwrite,
                     multipart_threshold=int(args.multipart_threshold_mib * 2**20))
    print(f"uploaded {len(keys)} files to {args.uri}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from spdnas.data import s3

    files = s3.download(args.uri, args.local, overwrite=args.overwrite)
    print(f"downloaded {len(files)} files to {args.local}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    from spdnas.data import s3

    objects = s3.ls(args.uri)
    for obj in objects:
        print(f"{obj.size:>12}  {obj.key}")
    print(f"{len(objects)} objects, {sum(o.size for o in objects) / 2**20:.1f} MiB")
    return 0


def user_errors(*extra: type[BaseException]) -> tuple[type[BaseException], ...]:
    """Failures a user can fix (bad files, data, values, S3 access) — reported in one line, not
    as a traceback: ``ValueError``, ``OSError``, ``KeyError``, boto3's and botocore's errors (e.g. a
    failed upload), and ``extra``."""
    expected: tuple[type[BaseException], ...] = (ValueError, OSError, KeyError, *extra)
    try:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return expected
    return (*expected, BotoCoreError, ClientError, Boto3Error)


def show_traceback() -> bool:
    """Whether ``SPDNAS_DEBUG`` asks for the full traceback instead of the one-line error (set it,
    e.g. ``SPDNAS_DEBUG=1``, when an error line looks like a bug rather than a mistake of yours)."""
    return os.environ.get("SPDNAS_DEBUG", "").strip() not in ("", "0")


def error_text(err: BaseException) -> str:
    """The message of ``err``; a ``KeyError``'s own text, not its quoted ``repr``, and a bare key
    (a file or record without a field that is read: ``error: class_names`` said nothing) named as
    missing, with the way to see where."""
    if not (isinstance(err, KeyError) and len(err.args) == 1):
        return str(err)
    text = str(err.args[0])
    if text and not any(c.isspace() for c in text):
        return (f"missing field {text!r} (a file or record without a field spdnas reads; "
                "SPDNAS_DEBUG=1 shows where)")
    return text


def _guarded(command):
    """Run ``command``; expected failures print one line on stderr and return exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except BrokenPipeError:  # output piped into e.g. `head`: not an error of the command
            raise
        except user_errors(TypeError, ImportError) as err:
            if show_traceback():
                raise
            print(f"spdnas data {args.data_command}: error: {error_text(err)}", file=sys.stderr)
            return 1

    return run


_BUILDERS_EPILOG = "<the registered builders>"


class _BuildersHelpFormatter(argparse.HelpFormatter):
    """Writes the builders and their parameters in place of ``_BUILDERS_EPILOG``; imports the
    sources only when ``spdnas data make --help`` is asked for."""

    def _format_text(self, text: str) -> str:
        if text != _BUILDERS_EPILOG:
            return super()._format_text(text)
        from spdnas.data.registry import describe_builders

        return f"builders and their parameters (--param KEY=VALUE):\n{describe_builders()}\n"


def add_data_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command and its subcommands to the ``spdnas`` parser."""
    data = subparsers.add_parser("data", help="make, check, inspect and move SPD datasets")
    sub = data.add_subparsers(dest="data_command", required=True)

    make = sub.add_parser("make", help="build a dataset (generator or importer) and write it as Parquet",
                          epilog=_BUILDERS_EPILOG, formatter_class=_BuildersHelpFormatter)
    make.add_argument("name", help="a builder: radar-synth, japanese-vowels, basic-motions, radar-npy, "
                                   "hdm05-npy, afew, matrices (see below)")
    make.add_argument("out", help="output folder or s3://bucket/prefix")
    make.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                      help="builder parameter (JSON value or string), e.g. snr_db=0 or src=/data/hdm05")
    make.add_argument("--overwrite", action="store_true", help="replace an existing dataset at OUT")
    make.set_defaults(func=_guarded(_make))

    validate = sub.add_parser("validate", help="run every check on a dataset (exit status 1 on failure)")
    validate.add_argument("uri")
    validate.add_argument("--repair", action="store_true", help="accept rows that repair would fix")
    validate.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                          help="dtype the data will be used in (sets the positive-definiteness tolerance)")
    validate.set_defaults(func=_guarded(_validate))

    info = sub.add_parser("info", help="print n, classes and counts per split and class")
    info.add_argument("uri")
    info.set_defaults(func=_guarded(_info))

    upload = sub.add_parser("upload", help="upload a dataset folder (or file) to s3://bucket/prefix")
    upload.add_argument("local")
    upload.add_argument("uri")
    upload.add_argument("--overwrite", action="store_true")
    upload.add_argument("--multipart-threshold-mib", type=float, default=8.0)
    upload.set_defaults(func=_guarded(_upload))

    download = sub.add_parser("download", help="download s3://bucket/prefix into a local folder")
    download.add_argument("uri")
    download.add_argument("local")
    download.add_argument("--overwrite", action="store_true")
    download.set_defaults(func=_guarded(_download))

    ls = sub.add_parser("ls", help="list the objects under s3://bucket/prefix")
    ls.add_argument("uri")
    ls.set_defaults(func=_guarded(_ls))
