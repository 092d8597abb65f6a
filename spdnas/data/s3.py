"""S3 access: boto3 transfers (upload, download, ls) and the pyarrow filesystem for a URI.

Endpoint, region and credentials come from the standard AWS chain, never from code: boto3
resolves them itself (``AWS_ENDPOINT_URL[_S3]``, ``AWS_REGION``, ``~/.aws/config``, instance
roles, ...); for pyarrow, :func:`pyarrow_filesystem` takes the endpoint boto3 resolves
(``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, or ``endpoint_url`` in the AWS config file, as
for MinIO) and the region from ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (else the boto3
profile), and leaves credentials to the AWS SDK chain.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from spdnas.data.schema import MANIFEST_NAME, check_file_paths
from spdnas.progress import Progress

MAX_ATTEMPTS = 10
MULTIPART_THRESHOLD = 8 * 2**20
CHECKSUM_ALGORITHM = "CRC32"


@dataclass(frozen=True)
class ObjectInfo:
    """One S3 object: key relative to the listed prefix, size in bytes."""

    key: str
    size: int


def is_s3_uri(uri: str) -> bool:
    """Whether ``uri`` starts with ``s3://``."""
    return str(uri).startswith("s3://")


def comparable_uri(uri: str) -> str:
    """``uri`` comparable with another: local paths absolute and normalised (``..``, ``//``, a
    trailing ``/``; links are not followed), no trailing ``/`` (no filesystem is opened, so an
    ``s3://`` URI needs no credentials)."""
    return uri.rstrip("/") if is_s3_uri(uri) else os.path.abspath(os.path.expanduser(uri))


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")`` (no trailing slash)."""
    if not is_s3_uri(uri):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"s3 URI without a bucket: {uri!r}")
    key = key.strip("/")
    if "//" in key:  # boto3 would write such keys, pyarrow (every reader) refuses them
        raise ValueError(f"s3 URI with an empty path component ('//'): {uri!r}")
    return bucket, key


def endpoint_url() -> str | None:
    """The S3 endpoint boto3 uses, where one is configured (None: AWS's own).

    From ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` or ``endpoint_url`` in the AWS config
    file (profile or its ``services`` section), unless ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``,
    so that pyarrow's reads go where boto3's uploads went. Resolved once per AWS environment.
    """
    return _configured_endpoint(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))))


@functools.lru_cache(maxsize=8)
def _configured_endpoint(aws_environment: tuple[tuple[str, str], ...]) -> str | None:
    """The endpoint of a boto3 S3 client where it differs from one that ignores configured
    endpoints (``aws_environment`` only keys the cache)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    name = session.region_name or "us-east-1"
    try:
        configured = session.client("s3", region_name=name).meta.endpoint_url
    except ValueError:  # botocore refuses an endpoint without a scheme; pyarrow takes it as https
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    default = session.client("s3", region_name=name,
                             config=Config(ignore_configured_endpoint_urls=True)).meta.endpoint_url
    return None if configured == default else configured


def region() -> str | None:
    """The region from ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else the boto3 profile's."""
    value = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if value:
        return value
    import boto3

    return boto3.session.Session().region_name


_credentials_found = False


def require_credentials(uri: str) -> None:
    """Fail at once, naming the fix, when the AWS chain has no credentials (the S3 client would
    otherwise retry for over a minute before its error). Checked until found once per process."""
    global _credentials_found
    if _credentials_found:
        return
    import boto3

    if boto3.session.Session().get_credentials() is None:
        raise ValueError(f"{uri}: no AWS credentials found (environment, AWS_PROFILE / ~/.aws, or an "
                         "instance or pod role); set them, e.g. AWS_PROFILE=... or "
                         "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    _credentials_found = True


_reachable: set[tuple[str | None, str]] = set()
REACH_ATTEMPTS = 3
REACH_TIMEOUT_S = 5


def require_reachable(uri: str) -> None:
    """Fail within seconds, naming the fix, when the S3 endpoint cannot be reached or the bucket
    of ``uri`` does not exist there.

    The clients' retries would otherwise take 20 s (boto3) to 100 s (pyarrow) to give up on a
    mistyped endpoint. One ``HeadBucket`` request, ``REACH_ATTEMPTS`` attempts in all, each
    given ``REACH_TIMEOUT_S`` to connect and as long to answer, once per endpoint and bucket per
    process; any other answer (e.g. 403 where the credentials may read objects but not the
    bucket) is left to the real request to report.

    Raises
    ------
    ValueError
        The endpoint refused the connection or did not answer, or the bucket does not exist.
    """
    bucket, _ = split_s3_uri(uri)
    endpoint = endpoint_url()
    if (endpoint, bucket) in _reachable:
        return
    require_credentials(uri)
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError, ReadTimeoutError
    from botocore.exceptions import ConnectionError as EndpointUnreachable

    url = endpoint if endpoint is None or "://" in endpoint else f"https://{endpoint}"  # as pyarrow reads it
    config = Config(connect_timeout=REACH_TIMEOUT_S, read_timeout=REACH_TIMEOUT_S,
                    retries={"total_max_attempts": REACH_ATTEMPTS, "mode": "standard"})
    probe = boto3.session.Session().client("s3", endpoint_url=url, region_name=region(), config=config)
    where = f"the S3 endpoint {probe.meta.endpoint_url}"
    try:
        probe.head_bucket(Bucket=bucket)
    except (EndpointUnreachable, ReadTimeoutError) as exc:
        raise ValueError(f"{uri}: no answer from {where} ({exc}); check AWS_ENDPOINT_URL / "
                         "AWS_ENDPOINT_URL_S3 (or endpoint_url in the AWS config) and the network") from None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            raise ValueError(f"{uri}: {where} has no bucket {bucket!r}; create it first "
                             f"(e.g. aws s3 mb s3://{bucket}) or fix the URI") from None
    _reachable.add((endpoint, bucket))


def pyarrow_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and path for a local path or an ``s3://bucket/prefix`` URI.

    Parameters
    ----------
    uri : str
        Local path (absolute or relative) or ``s3://bucket/prefix``.

    Returns
    -------
    (pyarrow.fs.FileSystem, str)
        A ``LocalFileSystem`` and the absolute path, or an ``S3FileSystem`` (endpoint, scheme
        and region from the environment; ``http://`` endpoints get ``scheme="http"``) and
        ``"bucket/prefix"``.
    """
    if not is_s3_uri(uri):
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().absolute())
    require_credentials(uri)
    bucket, key = split_s3_uri(uri)
    kwargs: dict = {"retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS)}
    endpoint = endpoint_url()
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    resolved_region = region()
    if resolved_region:
        kwargs["region"] = resolved_region
    return pafs.S3FileSystem(**kwargs), f"{bucket}/{key}".rstrip("/")


def client():
    """A boto3 S3 client with standard retries (endpoint/credentials from the AWS chain; the
    region of :func:`region`, as pyarrow's: boto3 itself does not read ``AWS_REGION``)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", region_name=region(),
                        config=Config(retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"}))


def _transfer_config(multipart_threshold: int):
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(multipart_threshold=multipart_threshold,
                          multipart_chunksize=max(multipart_threshold, 5 * 2**20), max_concurrency=4)


def ls(uri: str) -> list[ObjectInfo]:
    """Objects under an ``s3://bucket/prefix`` (recursive), keys relative to the prefix, sorted.

    Directory markers (empty keys ending in ``/``, which some tools and pyarrow create) are skipped.
    """
    bucket, prefix = split_s3_uri(uri)
    require_reachable(uri)
    base = f"{prefix}/" if prefix else ""
    out = []
    for page in client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        out += [ObjectInfo(obj["Key"][len(base):], int(obj["Size"])) for obj in page.get("Contents", [])
                if not obj["Key"].endswith("/")]
    return sorted(out, key=lambda o: o.key)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 digest of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_against_manifest(folder: Path) -> int:
    """Check the files of a local dataset folder against its manifest's SHA-256 digests.

    Returns the number of files checked (0 if the folder has no manifest).

    Raises
    ------
    ValueError
        Naming the first file that is missing or whose digest differs.
    """
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return 0
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    check_file_paths(manifest, str(manifest_path))
    files = manifest["files"]
    for entry in files:
        path = folder / entry["path"]
        if not path.is_file():
            raise ValueError(f"{path}: listed in {manifest_path} but missing")
        if sha256_file(path) != entry["sha256"]:
            raise ValueError(f"{path}: SHA-256 differs from {manifest_path} (corrupt or modified file)")
    return len(files)


def _local_files(local: Path) -> list[tuple[Path, str]]:
    """(path, relative key) of every file to upload: of a dataset folder, the files its manifest
    lists and then the manifest (not temporary files or an earlier generation's); of any other
    folder, every file."""
    if local.is_file():
        return [(local, local.name)]
    manifest = local / MANIFEST_NAME
    if manifest.is_file():
        names = [entry["path"] for entry in json.loads(manifest.read_text(encoding="utf-8"))["files"]]
        return [(local / name, name) for name in names] + [(manifest, MANIFEST_NAME)]
    return sorted((p, p.relative_to(local).as_posix()) for p in local.rglob("*") if p.is_file())


def upload(local: str | Path, uri: str, *, overwrite: bool = False,
           multipart_threshold: int = MULTIPART_THRESHOLD, progress: bool = True) -> list[str]:
    """Upload a file or a folder (a dataset) to ``s3://bucket/prefix``.

    Files above ``multipart_threshold`` go up in parts; every request carries a CRC32
    checksum that S3 verifies. A dataset folder is first checked against its manifest's
    SHA-256 digests, and its manifest is uploaded last, so readers never see a manifest whose
    files are not all there. Over a dataset (``overwrite``), the old manifest is deleted first
    (an upload cut short leaves no dataset rather than the old manifest over a mix of files) and
    the old dataset's data files the new one does not have are deleted last.

    Returns
    -------
    list of str
        The object keys written.

    Raises
    ------
    FileExistsError
        If objects exist under the prefix and ``overwrite`` is false.
    """
    local = Path(local)
    if not local.exists():
        raise FileNotFoundError(f"upload: {local} does not exist")
    from spdnas.data.parquet import PART_FILE

    bucket, prefix = split_s3_uri(uri)
    require_reachable(uri)
    existing = [obj.key for obj in ls(uri)]
    if existing and not overwrite:
        raise FileExistsError(f"upload: {uri} already holds objects; pass overwrite=True (--overwrite)")
    dataset = local.is_dir() and (local / MANIFEST_NAME).is_file()
    if local.is_dir():
        verify_against_manifest(local)
    files = _local_files(local)
    s3, config = client(), _transfer_config(multipart_threshold)

    def key_of(rel: str) -> str:
        return f"{prefix}/{rel}" if prefix else rel

    if dataset and MANIFEST_NAME in existing:
        s3.delete_object(Bucket=bucket, Key=key_of(MANIFEST_NAME))
    meter = Progress(f"upload {uri}", sum(p.stat().st_size for p, _ in files), "B", enabled=progress)
    keys = []
    for path, rel in files:
        s3.upload_file(str(path), bucket, key_of(rel), ExtraArgs={"ChecksumAlgorithm": CHECKSUM_ALGORITHM},
                       Config=config, Callback=meter.update)
        keys.append(key_of(rel))
    meter.close()
    if dataset:
        sent = {rel for _, rel in files}
        for rel in existing:
            if rel not in sent and PART_FILE.fullmatch(rel):
                s3.delete_object(Bucket=bucket, Key=key_of(rel))
    return keys


def download(uri: str, local: str | Path, *, overwrite: bool = False, progress: bool = True,
             select: Callable[[str], bool] | None = None) -> list[Path]:
    """Download everything under ``s3://bucket/prefix`` (or the keys, relative to the prefix, that
    ``select`` accepts) into the folder ``local``.

    Responses are checked against their S3 checksums where the object has one; a dataset's
    files are then checked against its manifest's SHA-256 digests. Files are written under
    temporary names and renamed only after every check passed.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    FileExistsError
        If ``local`` exists and is not empty, unless ``overwrite``.
    """
    local = Path(local)
    if local.exists() and any(local.iterdir()) and not overwrite:
        raise FileExistsError(f"download: {local} is not empty; pass overwrite=True (--overwrite)")
    bucket, prefix = split_s3_uri(uri)
    objects = [obj for obj in ls(uri) if select is None or select(obj.key)]
    if not objects:
        raise FileNotFoundError(f"download: no objects under {uri}{' to select' if select else ''}")
    for obj in objects:
        if obj.key.startswith("/") or ".." in obj.key.split("/"):
            raise ValueError(f"download: the object key {prefix}/{obj.key} would be written outside {local}")
    s3 = client()
    meter = Progress(f"download {uri}", sum(o.size for o in objects), "B", enabled=progress)
    staging = local / ".spdnas-download"
    staged = []
    for obj in objects:
        target = staging / obj.key
        target.parent.mkdir(parents=True, exist_ok=True)
        key = f"{prefix}/{obj.key}" if prefix else obj.key
        s3.download_file(bucket, key, str(target), ExtraArgs={"ChecksumMode": "ENABLED"},
                         Callback=meter.update)
        staged.append(obj.key)
    meter.close()
    try:
        verify_against_manifest(staging)
    except ValueError as exc:
        _remove_tree(staging)
        raise ValueError(str(exc).replace(str(staging), uri)) from None  # the objects, not a deleted copy
    written = []
    for rel in staged:
        final = local / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, final)
        written.append(final)
    _remove_tree(staging)
    return written


def _remove_tree(folder: Path) -> None:
    """Remove the staging folder this module created (files first, then folders)."""
    if not folder.exists():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()
