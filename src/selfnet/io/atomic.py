"""Atomic file writing: a hidden temporary file next to the target, moved into place on success."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from selfnet.errors import OutputError
from selfnet.io.common import _first_line


@contextlib.contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path next to ``path``; move it into place only on success.

    The temporary name keeps the real suffix (e.g. ``.out.tmp-12-ab34cd.ome.tif``) so writers
    pick the right format. On any exception, Ctrl-C included, the temporary file is removed and
    an existing file at ``path`` is left untouched.
    """
    final = Path(path)
    remove_stale_temps(final)
    temp = final.with_name(_temp_name(final.name))
    try:
        yield temp
        os.replace(temp, final)
    except OSError as exc:
        _remove_quietly(temp)
        raise OutputError(f"cannot write {final}: {exc.strerror or _first_line(exc)}") from exc
    except BaseException:
        _remove_quietly(temp)
        raise


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete hidden temporaries of ``path`` left by writers that died (kill -9, power loss); return them.

    Only names of the exact ``.STEM.tmp-PID-HEX.SUFFIX`` form are touched, and only when no process
    with that PID is alive, so a concurrent writer's temporary file is never removed.
    """
    final = Path(path)
    suffix = _full_suffix(final.name)
    stem = final.name[: len(final.name) - len(suffix)] if suffix else final.name
    pattern = re.compile(rf"\.{re.escape(stem)}\.tmp-(\d+)-[0-9a-f]{{6}}{re.escape(suffix)}")
    removed = []
    with contextlib.suppress(OSError):
        for entry in final.parent.iterdir() if str(final.parent) else Path(".").iterdir():
            match = pattern.fullmatch(entry.name)
            if match and entry.is_file() and not _alive(int(match.group(1))):
                _remove_quietly(entry)
                removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this PID exists (ours counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else
        return True
    return True


def _temp_name(name: str) -> str:
    """Hidden temporary name that keeps the full suffix (``.ome.tif`` stays at the end)."""
    suffix = _full_suffix(name)
    stem = name[: len(name) - len(suffix)] if suffix else name
    return f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(3)}{suffix}"


def _full_suffix(name: str) -> str:
    """The suffix of a file name, ``.ome.tif``/``.ome.tiff`` counted as one."""
    lower = name.lower()
    for double in (".ome.tif", ".ome.tiff"):
        if lower.endswith(double):
            return name[-len(double) :]
    return Path(name).suffix


def _remove_quietly(p: Path) -> None:
    """Delete a file if it exists, ignoring errors (used while cleaning up)."""
    with contextlib.suppress(OSError):
        p.unlink()
