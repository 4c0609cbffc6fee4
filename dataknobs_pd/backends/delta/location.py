"""Where the tables of a delta:// store live: the store's root folder (folder.py: its file system,
errors as StorageError, the probe), the options for delta-rs (reading, committing), and staged files."""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import uuid
from contextlib import suppress

from deltalake import DeltaTable

from ...errors import InvalidArgumentError
from ..folder import Folder, folder_name

LOG = "_delta_log"
STAGE = "dk-"  # prefix of the folders a commit's new files are written into, inside the table's folder
# fsspec's S3 options -> the names delta-rs (object_store) gives the same settings
_S3_KEYS = {"key": "AWS_ACCESS_KEY_ID", "secret": "AWS_SECRET_ACCESS_KEY", "token": "AWS_SESSION_TOKEN"}


class Location(Folder):
    """The root folder of a delta:// store: fsspec lists and removes, delta-rs reads and commits."""

    def __init__(self, url: str, storage_options: dict | None):
        options = dict(storage_options or {})
        if not all(isinstance(k, str) for k in options):
            raise InvalidArgumentError(f"storage_options= takes str keys, got {list(options)!r}")
        # Upper-case keys (AWS_..., AZURE_...) are delta-rs settings as its docs name them; the rest go to fsspec.
        native = {k: str(v) for k, v in options.items() if k.isupper()}
        fs_options = {k: v for k, v in options.items() if not k.isupper()}
        super().__init__(url, fs_options)
        # delta-rs is given the folder as a URL: a local one made absolute and normalized (no '..')
        self.root = (os.path.abspath(self.root) if self.local else self.root).rstrip("/") or "/"
        self.scheme = "" if self.local else ("s3" if self.s3 else self.protocols[0])
        self.delta_options = {**(_delta_s3(fs_options) if self.scheme == "s3" else {}), **native}

    def install_hint(self, protocol: str) -> str:
        return "pip install 'dataknobs-pd[delta,s3]'"

    # -- paths -------------------------------------------------------------------------------------
    def folder(self, table: str) -> str:
        """The table's folder as fsspec names it."""
        return f"{self.root}/{delta_folder(table)}"

    def uri(self, table: str) -> str:
        """The table's folder as delta-rs names it."""
        return self.uri_of(self.folder(table))

    def uri_of(self, path: str) -> str:
        """A URL for delta-rs, which decodes %XX in paths: the folder names' own % signs are encoded."""
        quoted = urllib.parse.quote(path, safe="/")
        return f"file://{quoted}" if self.local else f"{self.scheme}://{quoted}"

    def delta_table(self, table: str, version: int | None = None) -> DeltaTable:
        """The table (its latest version, or `version`) as delta-rs opens it."""
        return DeltaTable(self.uri(table), version=version, storage_options=self.delta_options or None)

    def new_stage(self) -> str:
        """A fresh folder name, inside the table's folder, for the files of one commit."""
        return f"{STAGE}{uuid.uuid4().hex}"

    # -- listing and removing -------------------------------------------------------------------------
    def ls(self, path: str) -> list[str]:
        """Names in a folder ([] when there is none)."""
        if self.local:
            try:
                return os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                return []
        self.fs.invalidate_cache(path)
        try:
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]
        except FileNotFoundError:
            return []

    def is_table(self, folder: str) -> bool:
        """A folder holding a Delta log with at least one entry."""
        return bool(self.ls(f"{folder}/{LOG}"))

    def remove(self, path: str) -> None:
        """Remove a folder and everything in it (a missing one is no error). A table's log goes first,
        one entry at a time (a refusal stops at the first), so that the rest is unreferenced files."""
        if self.local:
            if os.path.isdir(path):
                shutil.rmtree(path)
            return
        for name in sorted(self.ls(f"{path}/{LOG}")):  # object stores answer a refused bulk delete with 200
            with suppress(FileNotFoundError):
                self.fs.rm_file(f"{path}/{LOG}/{name}")
        with suppress(FileNotFoundError):
            self.fs.rm(path, recursive=True)
        self.fs.invalidate_cache(path)

    def remove_quietly(self, path: str) -> None:
        with suppress(Exception):  # leftovers are unreferenced files: harmless, and vacuum removes them
            self.remove(path)

    def harvest(self, folder: str, stage: str) -> list[dict]:
        """The add actions (path relative to the table, size, stats as delta-rs wrote them) of the one
        commit of the table staged in `folder/stage`; its log is removed, its files stay."""
        log = f"{folder}/{stage}/{LOG}"
        raw = self.fs.cat_file(f"{log}/{0:020d}.json")
        adds = []
        for line in raw.decode().split("\n"):  # JSON lines: splitlines() would also cut at \x85 or \u2028 in a value
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                add = action["add"]
                add["path"] = f"{stage}/{add['path']}"
                adds.append(add)
        if self.local:
            self.remove(log)
        else:  # its one entry is the whole log on an object store: one request, not listings and a bulk delete
            self.fs.rm_file(f"{log}/{0:020d}.json")
        return adds


def delta_folder(table: str) -> str:
    """The folder a table lives in: the file stores' percent-encoding (never '.', '..' or a path), with
    '!' for '%' (and '~' encoded too): delta-rs decodes %XX in table paths, and not the same number of
    times everywhere, and its S3 listings of keys with '~' are refused (moto); '!' is safe in S3 keys."""
    enc = folder_name(table).replace("~", "%7E").replace("%", "!")
    if len(enc) > 240:
        raise InvalidArgumentError(
            f"table name {table[:40]!r}... is too long for a Delta store: {len(enc)} bytes "
            f"once encoded for a folder name, at most 240"
        )
    return enc


def table_of(folder: str) -> str | None:
    """The table name a folder holds (None for a folder no table name maps to)."""
    name = urllib.parse.unquote(folder.replace("!", "%"))
    try:
        return name if delta_folder(name) == folder else None
    except InvalidArgumentError:
        return None


def _delta_s3(options: dict) -> dict[str, str]:
    """delta-rs settings for what fsspec's S3 options say (keys, endpoint, region)."""
    client = options.get("client_kwargs") or {}
    out = {name: str(options[k]) for k, name in _S3_KEYS.items() if options.get(k)}
    endpoint = options.get("endpoint_url") or client.get("endpoint_url")
    if endpoint:
        out["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            out["AWS_ALLOW_HTTP"] = "true"
    region = client.get("region_name") or options.get("region_name")
    if region:
        out["AWS_REGION"] = region
    if options.get("anon"):
        out["AWS_SKIP_SIGNATURE"] = "true"
    return out
