"""The deployed dbt manifests a merge is compared with, kept in the Dagster instance's storage
(its key-value store, compressed), never on one process's disk: the daemon that evaluates
merge_sensor may run in a container that restarts with an empty disk, and the next merge must
still be found.

One key per (dbt target, code checksum); an index per target lists the kept checksums, and
only the last two are kept (the one the cursor names and the one a tick was about to move it
to, should that tick fail before its cursor is stored).
"""

import base64
import json
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

KEEP = 2


def _key(target: str, checksum: str) -> str:
    return f"rescue/deployed_manifest/{target}/{checksum}"


def _index_key(target: str) -> str:
    return f"rescue/deployed_manifests/{target}"


def _get(instance: dg.DagsterInstance, key: str) -> str | None:
    return instance.run_storage.get_cursor_values({key}).get(key) or None


def _set(instance: dg.DagsterInstance, key: str, value: str) -> None:
    # one key per call: SQLite's set_cursor_values drops new keys of a batch (rescues/store.py)
    instance.run_storage.set_cursor_values({key: value})


def keep(instance: dg.DagsterInstance, manifest_path: str, checksum: str, target: str) -> None:
    """Store the manifest at `manifest_path` as the deployed code `checksum` of `target`."""
    blob = zlib.compress(Path(manifest_path).read_bytes(), level=6)
    _set(instance, _key(target, checksum), base64.b64encode(blob).decode("ascii"))
    kept = [c for c in json.loads(_get(instance, _index_key(target)) or "[]") if c != checksum]
    kept.append(checksum)
    for old in kept[:-KEEP]:
        _set(instance, _key(target, old), "")  # the key-value store has no delete
    _set(instance, _index_key(target), json.dumps(kept[-KEEP:]))


def is_kept(instance: dg.DagsterInstance, checksum: str, target: str) -> bool:
    return _get(instance, _key(target, checksum)) is not None


@contextmanager
def state_dir(instance: dg.DagsterInstance, checksum: str, target: str) -> Iterator[Path | None]:
    """A temporary folder holding the deployed `manifest.json` of `checksum` (dbt's --state
    folder), or None when the instance does not hold it."""
    stored = _get(instance, _key(target, checksum))
    if stored is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="rescue-state-") as folder:
        path = Path(folder) / "manifest.json"
        path.write_bytes(zlib.decompress(base64.b64decode(stored)))
        yield Path(folder)
