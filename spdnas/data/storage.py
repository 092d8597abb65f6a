"""Byte-level access to a dataset folder (local or S3) through a pyarrow filesystem."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow.fs as pafs

from spdnas.data.s3 import pyarrow_filesystem, require_reachable
from spdnas.data.schema import FORMAT_NAME, MANIFEST_NAME, SCHEMA_VERSION, check_file_paths


class Folder:
    """A dataset folder: a pyarrow filesystem and a base path.

    An S3 folder checks at once that its endpoint answers and its bucket exists
    (:func:`spdnas.data.s3.require_reachable`).

    Parameters
    ----------
    uri : str
        Local path or ``s3://bucket/prefix``.
    """

    def __init__(self, uri: str):
        self.uri = str(uri)
        self.fs, self.base = pyarrow_filesystem(self.uri)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        if not self.is_local:
            require_reachable(self.uri)

    def path(self, name: str) -> str:
        """Filesystem path of ``name`` inside the folder."""
        return f"{self.base}/{name}"

    def display(self, name: str) -> str:
        """``name`` as the user would write it (for messages)."""
        return f"{self.uri.rstrip('/')}/{name}"

    def list_names(self) -> list[str]:
        """Names (relative paths) of all files in the folder; empty if it does not exist.

        Raises
        ------
        NotADirectoryError
            Naming the path if it is a file, or the file a local path runs through (no folder can
            be made there).
        """
        selector = pafs.FileSelector(self.base, recursive=True, allow_not_found=True)
        prefix = self.base.rstrip("/") + "/"
        try:
            found = self.fs.get_file_info(selector)
        except NotADirectoryError:
            raise NotADirectoryError(f"{self.uri}: a file, not a folder; give the path of a folder "
                                     "(a new one, or one that holds a dataset)") from None
        if not found and self.is_local:
            above = next((p for p in Path(self.base).parents if p.exists()), None)
            if above is not None and not above.is_dir():
                raise NotADirectoryError(f"{self.uri}: no folder can be made there, {above} is a file; give "
                                         "the path of a folder (a new one, or one that holds a dataset)")
        return sorted(info.path[len(prefix):] for info in found if info.type == pafs.FileType.File)

    def exists(self, name: str) -> bool:
        """Whether the file ``name`` exists."""
        return self.fs.get_file_info(self.path(name)).type == pafs.FileType.File

    def read_bytes(self, name: str) -> bytes:
        """Whole content of ``name``.

        A random-access file knows its size, so on S3 this is one ranged GET of the whole object;
        ``open_input_stream().read()`` instead pulls small chunks (about 7× slower measured).
        """
        with self.fs.open_input_file(self.path(name)) as handle:
            return handle.read()

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write ``name``; locally through a temporary file and a rename (atomic replace)."""
        if not self.is_local:
            with self.fs.open_output_stream(self.path(name)) as handle:
                handle.write(data)
            return
        parent, _, leaf = name.rpartition("/")
        self.fs.create_dir(self.path(parent) if parent else self.base, recursive=True)
        temporary = self.path(f"{parent}/.{leaf}.tmp" if parent else f".{leaf}.tmp")
        with self.fs.open_output_stream(temporary) as handle:
            handle.write(data)
        self.fs.move(temporary, self.path(name))

    def delete(self, name: str) -> None:
        """Delete the file ``name``."""
        self.fs.delete_file(self.path(name))

    def clear(self) -> None:
        """Delete everything in the folder (the folder itself stays); nothing if it is missing."""
        if self.fs.get_file_info(self.base).type == pafs.FileType.Directory:
            self.fs.delete_dir_contents(self.base)

    def read_manifest(self) -> dict:
        """The parsed ``dataset.json``.

        Raises
        ------
        FileNotFoundError
            If the folder holds no manifest.
        ValueError
            If the manifest is of another format or schema version, or names a file outside the
            folder.
        """
        if not self.exists(MANIFEST_NAME):
            raise FileNotFoundError(f"{self.display(MANIFEST_NAME)}: not found — {self.uri} is not an "
                                    f"spdnas dataset (make one with `spdnas data make`)")
        try:
            manifest = json.loads(self.read_bytes(MANIFEST_NAME))
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
            raise ValueError(f"{self.display(MANIFEST_NAME)}: not valid JSON ({err})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise ValueError(f"{self.display(MANIFEST_NAME)}: format {found!r}, expected {FORMAT_NAME!r}")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{self.display(MANIFEST_NAME)}: schema version {manifest.get('schema_version')}"
                             f", this spdnas reads version {SCHEMA_VERSION}")
        check_file_paths(manifest, self.display(MANIFEST_NAME))
        return manifest


def content_digest(manifest: dict) -> str:
    """A dataset's identity as data: the same rows written again — by a later spdnas or pyarrow,
    or cut into other files — have the same digest; data made with other parameters another.

    It is the manifest's ``content_sha256``, a hash of the rows. Manifests written by earlier
    builds lack it; theirs is the SHA-256 over the files' checksums in row order, which the same
    data written by another version does not keep."""
    if "content_sha256" in manifest:
        return manifest["content_sha256"]
    return hashlib.sha256(json.dumps([f["sha256"] for f in manifest["files"]]).encode()).hexdigest()
