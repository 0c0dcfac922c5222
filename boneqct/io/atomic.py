"""Atomic output: single files written beside the target and renamed over it, and whole
result sets written into a staging folder that replaces the output folder as one unit.

A crash, a kill or a full disk never leaves a half-written file under its final name, nor an
output folder holding files of two runs. Files and folders end up with the permissions the
process's umask gives new ones (temporary files start owner-only).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import glob
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from boneqct.errors import InputError

#: The file naming a folder as a BoneQCT output set (run id, time, kind, files).
MANIFEST_NAME = "boneqct_run.json"
#: Help text of the commands' --out option.
OUT_HELP = ("output folder: new, empty, or written by BoneQCT before (the whole set is "
            "replaced as one unit)")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder (same suffixes); rename it on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    """The process's umask (read by setting it and setting it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, data) -> Path:
    """Write a JSON document atomically, indented, with a trailing newline."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj):
    """Serialise numpy scalars and arrays."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def check_output_folder(out_dir: str | Path) -> Path:
    """The output folder as an absolute path, refused up front (InputError) when it is empty
    text, an existing file, or a folder holding files BoneQCT did not write."""
    if str(out_dir).strip() in ("", "."):
        raise InputError("The output folder name is empty; give a folder name with --out DIR.")
    out_dir = Path(out_dir).absolute()
    if out_dir == Path.cwd().absolute() or out_dir in Path.cwd().absolute().parents:
        raise InputError("The output folder is the current folder or holds it; results replace "
                         "the whole folder, so give a new folder name with --out.")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"The output '{out_dir.name}' is an existing file, not a folder; give "
                         "a new folder name with --out.")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise InputError(f"The output folder '{out_dir.name}' already holds files that BoneQCT "
                         "did not write; results replace the whole folder, so give a new or "
                         "empty folder with --out.")
    check_writable_parent(out_dir)
    return out_dir


def check_output_file(path: str | Path, flag: str, example_name: str) -> None:
    """Refuse (InputError) an output file's path that is a folder, or whose folder cannot be
    created or written (``check_writable_parent``), before any work; the message suggests
    ``example_name`` inside the folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"The output '{path.name}' is a folder; {flag} takes a file name "
                         f"(e.g. {flag} {path.name}/{example_name}).")
    check_writable_parent(path, flag)


def check_writable_parent(path: str | Path, flag: str = "--out") -> None:
    """Refuse (InputError) an output path whose folder cannot be created or written: the
    nearest existing folder above it is a file or refuses a new entry (tried, not guessed
    from permission bits, which do not bind root or read-only mounts)."""
    path = Path(path).absolute()
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"The output '{path.name}' lies under '{existing.name}', which is a "
                         f"file, not a folder; give another path with {flag}.")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".boneqct-write-check-", dir=existing))
    except OSError as exc:
        raise InputError(f"Cannot write into the folder '{existing}' ({exc.strerror}); give a "
                         f"writable place with {flag}.") from None


def write_output_set(out_dir: str | Path, kind: str, write) -> dict[str, Path]:
    """Run ``write(folder) -> {name: path}`` into a staging folder and put the set in place
    as one unit (``output_set``); returns the paths in ``out_dir``."""
    out_dir = check_output_folder(out_dir)
    with output_set(out_dir, kind) as staging:
        paths = write(staging)
    return {name: out_dir / Path(path).relative_to(staging) for name, path in paths.items()}


@contextlib.contextmanager
def output_set(out_dir: str | Path, kind: str) -> Iterator[Path]:
    """Write a result set as one unit: yield an empty staging folder beside ``out_dir``; when
    the block ends without an error, a manifest (``MANIFEST_NAME``: run id, kind, time, files)
    is added and the staging folder takes the place of ``out_dir`` (a previous BoneQCT set
    there is removed), under a lock so that concurrent runs into one folder each leave a
    complete set (the last to finish wins). On an error or a kill ``out_dir`` keeps its
    previous set; staging folders left by dead processes are removed on the next run, which
    puts back a previous set a kill caught between the two renames.

    Raises:
        InputError: ``out_dir`` is empty text, an existing file, or a folder holding files
            BoneQCT did not write (it would be replaced).
    """
    out_dir = check_output_folder(out_dir)
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with _locked(parent / f".{out_dir.name}.lock"):
            _tidy_stale_folders(parent, out_dir.name)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-{os.getpid()}-",
                                        dir=parent))
        os.chmod(staging, 0o777 & ~_umask())
    except OSError as exc:
        raise InputError(f"Cannot write into '{parent}': {exc.strerror}. Choose a writable "
                         "folder with --out.") from None
    try:
        yield staging
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
        write_json_atomic(staging / MANIFEST_NAME, {
            "run_id": uuid.uuid4().hex, "kind": kind, "files": files,
            "written_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds")})
        with _locked(parent / f".{out_dir.name}.lock"):
            old = None
            if out_dir.exists():
                old = parent / f".{out_dir.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                os.rename(out_dir, old)
            try:
                os.rename(staging, out_dir)
            except OSError:
                if old is not None:
                    os.rename(old, out_dir)
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) on a lock file for the duration of the block."""
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tidy_stale_folders(parent: Path, name: str) -> None:
    """Remove the staging and replaced folders of ``name`` that processes no longer running
    left (under the set's lock), except a whole replaced set whose process died before its
    new set took its place (between the two renames of ``output_set``): that one is put back
    as ``name``."""
    for path in sorted(parent.glob(f".{glob.escape(name)}.*-*-*")):
        if not path.is_dir():
            continue
        try:
            pid = int(path.name[len(name) + 2:].split("-")[1])  # .NAME.staging-PID-...
        except (IndexError, ValueError):
            continue
        if _process_alive(pid):
            continue
        if path.name.startswith(f".{name}.old-") and not (parent / name).exists() \
                and _whole_set(path):
            os.rename(path, parent / name)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _whole_set(folder: Path) -> bool:
    """Whether ``folder`` holds every file its manifest lists (a replaced set whose removal
    was cut short does not)."""
    try:
        files = json.loads((folder / MANIFEST_NAME).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return isinstance(files, list) and all((folder / str(name)).is_file() for name in files)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
