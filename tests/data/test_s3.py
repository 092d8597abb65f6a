"""S3 round trips against moto's server on 127.0.0.1, over HTTP, as against AWS."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow.fs as pafs
import pytest
import torch

from spdnas.cli import main
from spdnas.data import read_dataset, write_dataset
from spdnas.data import s3 as s3mod
from spdnas.data.storage import Folder
from spdnas.pipeline import resolve_genotype
from spdnas.report.experiment import read_by_report
from spdnas.search.genotype import GenotypeError, published_genotype
from tests.conftest import BUCKET
from tests.data.conftest import toy_dataset


def by_id(dataset):
    return dataset.select(np.argsort(dataset.sample_ids))


def test_boto3_clients_take_the_region_pyarrow_takes(s3_server, monkeypatch):
    """boto3 reads AWS_DEFAULT_REGION only: with AWS_REGION alone (KubeRay pods, many CI
    systems) its clients went to us-east-1 while pyarrow's went to AWS_REGION."""
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert s3mod.client().meta.region_name == "eu-central-1"
    assert s3mod.pyarrow_filesystem("s3://b/p")[0].region == "eu-central-1"


def test_pyarrow_filesystem_uses_the_environment(s3_server, monkeypatch):
    fs, path = s3mod.pyarrow_filesystem("s3://my-bucket/some/prefix/")
    assert isinstance(fs, pafs.S3FileSystem) and path == "my-bucket/some/prefix"
    assert fs.region == "us-east-1"
    local, local_path = s3mod.pyarrow_filesystem("relative/dir")
    assert isinstance(local, pafs.LocalFileSystem) and local_path.endswith("/relative/dir")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "https://s3.example.test:9443")
    assert s3mod.endpoint_url() == "https://s3.example.test:9443"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "s3.example.test:9000")  # no scheme: https, as before
    assert s3mod.endpoint_url() == "s3.example.test:9000"
    options = s3mod.pyarrow_filesystem("s3://b/p")[0].__reduce__()[1][0]  # what the filesystem was made with
    assert (options["endpoint_override"], options["scheme"]) == ("s3.example.test:9000", "https")


def test_the_endpoint_of_the_aws_config_file_serves_reads_as_it_serves_uploads(s3_server, monkeypatch,
                                                                               tmp_path):
    """MinIO users put ``endpoint_url`` in ~/.aws/config; boto3 (upload, ls) honoured it, while
    pyarrow (every read) went to AWS."""
    endpoint = s3mod.endpoint_url()
    config_file = tmp_path / "aws-config"
    config_file.write_text(f"[default]\nregion = us-east-1\nendpoint_url = {endpoint}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    assert s3mod.endpoint_url() == endpoint
    uri = f"s3://{BUCKET}/from-config-file"
    write_dataset(toy_dataset(count=12, n=5), uri)
    assert len(read_dataset(uri)) == 12
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    assert s3mod.endpoint_url() is None
    monkeypatch.delenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # another environment: resolved again
    assert s3mod.endpoint_url() is None


def test_split_s3_uri():
    assert s3mod.split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="not an s3"):
        s3mod.split_s3_uri("/local/path")


def test_cli_upload_ls_download_round_trip(tmp_path, s3_prefix, capsys):
    local = tmp_path / "radar"
    assert main(["data", "make", "radar-synth", str(local), "--param", "n_samples=90"]) == 0
    assert main(["data", "upload", str(local), s3_prefix]) == 0
    assert main(["data", "ls", s3_prefix]) == 0
    listing = capsys.readouterr().out
    assert "dataset.json" in listing and ".parquet" in listing

    assert main(["data", "upload", str(local), s3_prefix]) == 1
    assert "overwrite" in capsys.readouterr().err

    back = tmp_path / "back"
    assert main(["data", "download", s3_prefix, str(back)]) == 0
    for path in local.iterdir():
        assert (back / path.name).read_bytes() == path.read_bytes()
    assert not (back / ".spdnas-download").exists()
    assert main(["data", "download", s3_prefix, str(back)]) == 1

    from_s3 = read_dataset(s3_prefix)
    assert torch.equal(from_s3.matrices, read_dataset(str(local)).matrices)
    assert main(["data", "info", s3_prefix]) == 0 and "radar-synth" in capsys.readouterr().out


def test_write_and_read_directly_on_s3(s3_prefix):
    original = toy_dataset(count=40, n=8, dtype=torch.float32)
    manifest = write_dataset(original, s3_prefix, rows_per_file=15)
    assert len(manifest["files"]) == 3
    assert sorted(o.key for o in s3mod.ls(s3_prefix)) == sorted(
        ["dataset.json", *(f["path"] for f in manifest["files"])])
    back = read_dataset(s3_prefix, dtype=torch.float32)
    assert torch.equal(by_id(back).matrices, by_id(original).matrices)
    with pytest.raises(FileExistsError):
        write_dataset(original, s3_prefix)
    write_dataset(toy_dataset(count=10, n=8), s3_prefix, overwrite=True)
    assert len(read_dataset(s3_prefix)) == 10
    assert all(o.key.startswith(("g1-", "dataset.json")) for o in s3mod.ls(s3_prefix))


def test_multipart_upload_of_a_large_file(tmp_path, s3_prefix):
    dataset = toy_dataset(count=200, n=93)
    write_dataset(dataset, tmp_path / "big", rows_per_file=200)
    part = next((tmp_path / "big").glob("*.parquet"))
    assert part.stat().st_size > 6 * 2**20
    s3mod.upload(tmp_path / "big", s3_prefix, multipart_threshold=5 * 2**20, progress=False)
    head = s3mod.client().head_object(Bucket=BUCKET, Key=f"{s3_prefix.split('/', 3)[3]}/{part.name}")
    assert head["ETag"].strip('"').endswith("-2")  # a two-part upload
    assert torch.equal(by_id(read_dataset(s3_prefix)).matrices, by_id(dataset).matrices)


def test_download_detects_a_modified_object(tmp_path, s3_prefix):
    write_dataset(toy_dataset(count=12), tmp_path / "ds")
    s3mod.upload(tmp_path / "ds", s3_prefix, progress=False)
    part = next((tmp_path / "ds").glob("*.parquet")).name
    bucket, prefix = s3mod.split_s3_uri(s3_prefix)
    s3mod.client().put_object(Bucket=bucket, Key=f"{prefix}/{part}", Body=b"not the parquet file")
    with pytest.raises(ValueError, match=f"^{re.escape(f'{s3_prefix}/{part}')}: SHA-256 differs") as raised:
        s3mod.download(s3_prefix, tmp_path / "back", progress=False)
    assert ".spdnas-download" not in str(raised.value)  # names the object, not a deleted copy
    assert not (tmp_path / "back" / part).exists()


def test_an_upload_over_a_dataset_cut_short_leaves_no_mixed_dataset(tmp_path, s3_prefix, monkeypatch):
    """Both datasets name their files g0-part-*: the old manifest stayed over a mix of files and
    every reader failed its checksums, naming a deleted staging copy."""
    write_dataset(toy_dataset(count=40, n=4, seed=1), tmp_path / "a", rows_per_file=10)
    write_dataset(toy_dataset(count=20, n=4, seed=2), tmp_path / "b", rows_per_file=10)
    s3mod.upload(tmp_path / "a", s3_prefix, progress=False)
    real = s3mod.client()
    sent = []

    class CutShort:
        def __getattr__(self, name):
            return getattr(real, name)

        def upload_file(self, *args, **kwargs):
            if sent:
                raise OSError("connection lost")
            sent.append(args)
            return real.upload_file(*args, **kwargs)

    monkeypatch.setattr(s3mod, "client", lambda: CutShort())
    with pytest.raises(OSError, match="connection lost"):
        s3mod.upload(tmp_path / "b", s3_prefix, overwrite=True, progress=False)
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):  # no dataset there now, rather than a mixed one
        read_dataset(s3_prefix)
    s3mod.upload(tmp_path / "b", s3_prefix, overwrite=True, progress=False)
    assert [o.key for o in s3mod.ls(s3_prefix)] == ["dataset.json", "g0-part-00000.parquet",
                                                    "g0-part-00001.parquet"]  # a's 00002/00003 gone
    expected = by_id(toy_dataset(count=20, n=4, seed=2)).matrices
    assert torch.equal(by_id(read_dataset(s3_prefix)).matrices, expected)


def test_a_uri_with_an_empty_path_component_is_refused():
    with pytest.raises(ValueError, match=r"empty path component \('//'\): 's3://bucket/x//y'"):
        s3mod.split_s3_uri("s3://bucket/x//y")


def test_download_fetches_only_the_selected_keys(tmp_path, s3_prefix):
    """What a report reads of an experiment on S3, not its checkpoints and models."""
    bucket, prefix = s3mod.split_s3_uri(s3_prefix)
    for key in ("results.jsonl", "runs/toy/spdnetnas/seed0/train/model.pt",
                "runs/toy/spdnetnas/seed0/train/metrics.jsonl", "tune/state.pkl"):
        s3mod.client().put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=b"{}")
    written = s3mod.download(s3_prefix, tmp_path / "back", progress=False, select=read_by_report)
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in written) == [
        "results.jsonl", "runs/toy/spdnetnas/seed0/train/metrics.jsonl"]
    assert sorted(p.relative_to(tmp_path / "back").as_posix() for p in (tmp_path / "back").rglob("*")
                  if p.is_file()) == ["results.jsonl", "runs/toy/spdnetnas/seed0/train/metrics.jsonl"]
    with pytest.raises(FileNotFoundError, match=r"no objects under .* to select"):
        s3mod.download(s3_prefix, tmp_path / "none", progress=False, select=lambda key: False)


def test_a_dataset_folder_uploads_only_what_its_manifest_lists(tmp_path, s3_prefix):
    """Temporary files and an earlier generation's files went up too."""
    manifest = write_dataset(toy_dataset(count=12), tmp_path / "ds")
    (tmp_path / "ds" / ".g1-part-00000.parquet.tmp").write_bytes(b"half")
    (tmp_path / "ds" / "g7-part-00000.parquet").write_bytes(b"old")
    s3mod.upload(tmp_path / "ds", s3_prefix, progress=False)
    listed = sorted(["dataset.json", *(f["path"] for f in manifest["files"])])
    assert [o.key for o in s3mod.ls(s3_prefix)] == listed


def test_paths_outside_the_dataset_folder_are_refused(tmp_path, s3_prefix):
    """A key or manifest path with ``..`` would be written or read outside the folder."""
    bucket, prefix = s3mod.split_s3_uri(s3_prefix)
    s3mod.client().put_object(Bucket=bucket, Key=f"{prefix}/sub/../../evil.txt", Body=b"x")
    with pytest.raises(ValueError, match=r"sub/\.\./\.\./evil\.txt would be written outside"):
        s3mod.download(s3_prefix, tmp_path / "back", progress=False)
    assert not (tmp_path / "evil.txt").exists()
    write_dataset(toy_dataset(count=12), tmp_path / "ds")
    manifest = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    manifest["files"][0]["path"] = "../elsewhere.parquet"
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(manifest))
    for attempt in (lambda: read_dataset(str(tmp_path / "ds")),
                    lambda: s3mod.upload(tmp_path / "ds", f"{s3_prefix}-up", progress=False)):
        with pytest.raises(ValueError, match=r"file path '\.\./elsewhere\.parquet' is not a name inside"):
            attempt()


def test_upload_refuses_a_corrupt_local_dataset(tmp_path, s3_prefix):
    write_dataset(toy_dataset(count=12), tmp_path / "ds")
    part = next((tmp_path / "ds").glob("*.parquet"))
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(ValueError, match="SHA-256"):
        s3mod.upload(tmp_path / "ds", s3_prefix, progress=False)
    assert s3mod.ls(s3_prefix) == []


@pytest.mark.parametrize("where", ["local", "s3"])
def test_folder_writes_nested_names_and_clears(where, tmp_path, request):
    from spdnas.data.storage import Folder

    folder = Folder(str(tmp_path / "out") if where == "local" else request.getfixturevalue("s3_prefix"))
    folder.write_bytes("a/b/c.txt", b"nested")
    folder.write_bytes("top.txt", b"top")
    assert folder.read_bytes("a/b/c.txt") == b"nested"
    assert folder.list_names() == ["a/b/c.txt", "top.txt"]
    folder.clear()
    assert folder.list_names() == []
    folder.clear()  # clearing an empty or missing folder is fine


def test_missing_credentials_fail_at_once_with_the_fix(monkeypatch):
    """Without credentials the S3 client would retry for over a minute; we stop first."""
    import time

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role either
    monkeypatch.setattr(s3mod, "_credentials_found", False)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"s3://b/x: no AWS credentials found .* AWS_ACCESS_KEY_ID"):
        s3mod.pyarrow_filesystem("s3://b/x")
    assert time.perf_counter() - start < 10
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    fs, path = s3mod.pyarrow_filesystem("s3://b/x")
    assert isinstance(fs, pafs.S3FileSystem) and path == "b/x"


def test_a_mistyped_endpoint_or_bucket_fails_within_seconds_naming_it(s3_server, monkeypatch):
    """pyarrow retried a refused connection for 100 s, boto3 for 19 s, before their errors."""
    import time

    from tests.conftest import _free_port

    with pytest.raises(ValueError, match=r"s3://no-such-bucket-x/p: the S3 endpoint .* has no bucket "
                                         r"'no-such-bucket-x'; create it first"):
        Folder("s3://no-such-bucket-x/p")
    with pytest.raises(ValueError, match=r"has no bucket 'no-such-bucket-y'"):  # --overwrite skips the ls
        s3mod.upload(__file__, "s3://no-such-bucket-y/p", overwrite=True, progress=False)
    refused = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", refused)
    for attempt in (lambda: Folder(f"s3://{BUCKET}/p"), lambda: s3mod.ls(f"s3://{BUCKET}/p")):
        start = time.perf_counter()
        with pytest.raises(ValueError, match=rf"s3://{BUCKET}/p: no answer from the S3 endpoint {refused} "
                                             r".*check AWS_ENDPOINT_URL"):
            attempt()
        assert time.perf_counter() - start < 15


def test_an_endpoint_that_never_answers_fails_after_the_probe_timeouts(s3_server, monkeypatch):
    """A port that takes connections but sends nothing (a stuck server) took 240 s to fail."""
    import socket
    import time

    monkeypatch.setattr(s3mod, "REACH_TIMEOUT_S", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the connections; nothing ever reads or answers
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        start = time.perf_counter()
        with pytest.raises(ValueError, match=rf"no answer from the S3 endpoint {endpoint} \(Read timeout"):
            Folder(f"s3://{BUCKET}/p")
        assert time.perf_counter() - start < 3 * 0.5 + 5  # three attempts and their back-off


def test_a_genotype_file_on_s3_is_read_where_a_search_left_it(s3_prefix):
    found = published_genotype("radar")
    Folder(s3_prefix).write_bytes("search/genotype.json", found.to_json().encode())
    assert resolve_genotype(f"{s3_prefix}/search/genotype.json") == found
    with pytest.raises(GenotypeError, match="no such genotype file"):
        resolve_genotype(f"{s3_prefix}/other/genotype.json")
    Folder(s3_prefix).write_bytes("bad.json", b"{not json")
    with pytest.raises(GenotypeError, match=r"bad\.json: genotype is not valid JSON"):
        resolve_genotype(f"{s3_prefix}/bad.json")


def test_a_missing_dataset_on_read_only_storage_names_the_way_to_make_it(monkeypatch):
    """A cluster node may only read datasets/: building a missing dataset there failed with an
    access error that did not say what to do. moto enforces IAM here (after the set-up calls),
    and the run's keys are a user's that may only read."""
    from spdnas.config import DataConfig
    from spdnas.pipeline import ensure_dataset
    from tests.conftest import start_moto_server, use_s3_endpoint

    server, endpoint = start_moto_server(INITIAL_NO_AUTH_ACTION_COUNT="5")
    try:
        use_s3_endpoint(monkeypatch, endpoint)
        import boto3

        bucket = "spdnas-read-only"
        boto3.client("s3").create_bucket(Bucket=bucket)
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_user(UserName="node")
        reads = {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:Head*"],  # moto's HeadObject
                 "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}
        iam.put_user_policy(UserName="node", PolicyName="read", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [reads]}))
        key = iam.create_access_key(UserName="node")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        uri = f"s3://{bucket}/datasets/radar"
        config = DataConfig(uri=uri, builder="radar-synth", builder_params={"n_samples": 30})
        with pytest.raises(PermissionError, match=re.escape(
                f"no dataset at {uri}, and making it there with data.builder=radar-synth failed (")) as err:
            ensure_dataset(config, progress=False)
        assert "ACCESS_DENIED" in str(err.value)
        assert f"`python -m jobs.prepare_data --dataset radar-synth --out {uri}`" in str(err.value)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_only_a_refusal_for_want_of_rights_is_reworded():
    """Any OSError was reworded as read-only storage: an earlier write cut short
    (FileExistsError) or an importer's missing source then named the wrong way out."""
    from spdnas.pipeline import _access_denied

    assert _access_denied(PermissionError("local folder"))
    assert _access_denied(OSError("When uploading part: AWS Error ACCESS_DENIED during UploadPart"))
    assert not _access_denied(FileExistsError("s3://b/datasets/x: a write was cut short; use --overwrite"))
    assert not _access_denied(FileNotFoundError("/data/src: not a folder"))
