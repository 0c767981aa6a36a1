"""Where billing files live: a local folder or an S3 prefix, read the same way."""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import urlsplit


class Location(Protocol):
    uri: str

    def read_bytes(self, relpath: str) -> bytes: ...

    def exists(self, relpath: str) -> bool: ...

    def glob(self, pattern: str) -> list[str]: ...

    def list_dirs(self, relpath: str) -> list[str]: ...

    def resolve(self, ref: str, anchor: str) -> str: ...

    def local_copy(self, relpath: str) -> contextlib.AbstractContextManager[Path]: ...


class MissingFile(FileNotFoundError):
    pass


def _relative_to_anchor(ref: str, anchor: str) -> str:
    """A manifest names files by full S3 URI or key; keep the part below the export root."""
    path = ref.split("://", 1)[-1]
    marker = f"/{anchor}/"
    idx = path.find(marker)
    if idx >= 0:
        return path[idx + len(marker) :]
    return path.lstrip("/")


@dataclass
class LocalLocation:
    root: Path

    @contextlib.contextmanager
    def local_copy(self, relpath: str) -> Iterator[Path]:
        """The file itself: read in place, never copied."""
        path = self._path(relpath)
        if not path.is_file():
            raise MissingFile(str(path))
        yield path

    @property
    def uri(self) -> str:
        return str(self.root)

    def _path(self, relpath: str) -> Path:
        return self.root / relpath

    def read_bytes(self, relpath: str) -> bytes:
        path = self._path(relpath)
        if not path.is_file():
            raise MissingFile(str(path))
        return path.read_bytes()

    def exists(self, relpath: str) -> bool:
        return self._path(relpath).is_file()

    def glob(self, pattern: str) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.glob(pattern) if p.is_file())

    def resolve(self, ref: str, anchor: str) -> str:
        return _relative_to_anchor(ref, anchor)

    def list_dirs(self, relpath: str) -> list[str]:
        """The names of the folders directly under ``relpath`` (none when it is not a folder)."""
        path = self._path(relpath)
        return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


@dataclass
class S3Location:
    bucket: str
    prefix: str
    client: Any

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, relpath: str) -> str:
        if not relpath:
            return self.prefix
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def read_bytes(self, relpath: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(relpath))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise MissingFile(f"s3://{self.bucket}/{self._key(relpath)}") from None

    @contextlib.contextmanager
    def local_copy(self, relpath: str) -> Iterator[Path]:
        """The object downloaded to a temporary file (streamed in parts, never held in memory whole), removed after.

        A disk too small for it is an OSError naming the object and the size it needs."""
        from botocore.exceptions import ClientError

        key = self._key(relpath)
        with tempfile.TemporaryDirectory(prefix="polo-s3-") as tmp:
            path = Path(tmp) / (PurePosixPath(key).name or "object")
            try:
                self.client.download_file(self.bucket, key, str(path))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                    raise MissingFile(f"s3://{self.bucket}/{key}") from None
                raise
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise OSError(exc.errno, f"s3://{self.bucket}/{key} does not fit on disk in {tmp}") from None
                raise
            yield path

    def exists(self, relpath: str) -> bool:
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(relpath), MaxKeys=1)
        return any(obj["Key"] == self._key(relpath) for obj in listing.get("Contents", []))

    def glob(self, pattern: str) -> list[str]:
        static = pattern.split("*", 1)[0]
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(static)):
            for obj in page.get("Contents", []):
                rel = obj["Key"][len(self.prefix) + 1 :] if self.prefix else obj["Key"]
                if fnmatch.fnmatch(rel, pattern):
                    found.append(rel)
        return sorted(found)

    def list_dirs(self, relpath: str) -> list[str]:
        """The common prefixes directly under ``relpath`` (S3's folders), one listing per thousand, never the objects
        below them: a trail's day is found without listing its years."""
        prefix = self._key(relpath).rstrip("/") + "/"
        names = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            names.extend(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        return sorted(names)

    def resolve(self, ref: str, anchor: str) -> str:
        if ref.startswith(f"s3://{self.bucket}/{self.prefix}/"):
            return ref[len(f"s3://{self.bucket}/{self.prefix}/") :]
        return _relative_to_anchor(ref, anchor)


def open_location(uri: str, s3_client: Any = None) -> Location:
    """``s3://bucket/prefix`` (with a boto3 S3 client) or a local folder path."""
    if uri.startswith("s3://"):
        parts = urlsplit(uri)
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3")
        return S3Location(bucket=parts.netloc, prefix=parts.path.strip("/"), client=s3_client)
    return LocalLocation(Path(uri).expanduser().resolve())


def describe_location(uri: str) -> str:
    """What ``polo check-connections`` says of an export location: how many files it can read there."""
    location = open_location(uri)
    files = location.glob("**/*")
    if not files:
        raise RuntimeError(f"{location.uri} holds no files")
    return f"{location.uri}: {len(files)} file(s) readable"


def file_digest(path: Path) -> bytes:
    """The SHA-256 of a file's bytes, read in parts (two files with the same digest hold the same line items)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.digest()
