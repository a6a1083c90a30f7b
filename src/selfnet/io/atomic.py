"""Atomic file writing: a hidden temporary file next to the target, moved into place on success."""

from __future__ import annotations

import contextlib
import os
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
