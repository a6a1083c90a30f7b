"""Outputs must never be, hold or sit inside an input: checked once, before any work.

Paths are compared after resolving symlinks (``realpath``), by inode where both exist (hard links,
case-insensitive file systems, bind mounts), and by containment in either direction (a ``.zarr``
folder holds its chunks; writing or deleting a folder that holds the input loses the input). A
``.npy`` file travels with its ``.npy.json`` sidecar, so both are compared.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from selfnet.errors import OutputError

PathLike = str | os.PathLike[str]


def with_companions(path: PathLike) -> list[Path]:
    """``path`` plus the files that travel with it (the ``.npy.json`` sidecar of a ``.npy``)."""
    p = Path(path).expanduser()
    return [p, p.with_name(p.name + ".json")] if p.name.lower().endswith(".npy") else [p]


def _real(path: Path) -> Path:
    """The path with every symlink resolved (also for paths that do not exist yet)."""
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    """Whether two existing paths are one file or folder (hard links and aliases included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(inner: Path, outer: Path) -> bool:
    """Whether ``inner`` lies inside (or is) the folder ``outer``, after resolving symlinks."""
    return inner == outer or outer in inner.parents


def overlaps(output: PathLike, source: PathLike) -> bool:
    """Whether writing or replacing ``output`` could touch ``source`` (same file, or one holds the other)."""
    out, src = Path(output).expanduser(), Path(source).expanduser()
    if _same_file(out, src):
        return True
    real_out, real_src = _real(out), _real(src)
    if _inside(real_out, real_src) or _inside(real_src, real_out):
        return True
    return any(_same_file(folder, real_src) for folder in real_out.parents if folder.exists()) or any(
        _same_file(folder, real_out) for folder in real_src.parents if folder.exists())


def check_not_input(outputs: Iterable[PathLike | None], inputs: Iterable[PathLike | None]) -> None:
    """Refuse (one-line :class:`OutputError`) any output that is, holds or lies inside an input.

    ``None`` entries are skipped. Called before anything is written or deleted, whatever
    ``--overwrite`` or ``--resume`` say, so an input is never lost to its own output.
    """
    sources = [(p, c) for p in inputs if p is not None for c in with_companions(p)]
    for output in (o for o in outputs if o is not None):
        for target in with_companions(output):
            for given, source in sources:
                if overlaps(target, source):
                    raise OutputError(f"{output} would overwrite the input {given}{_how(target, source)}: "
                                      "choose an output outside the input")


def _how(output: Path, source: Path) -> str:
    """A short reason, for the error line."""
    out, src = Path(output).expanduser(), Path(source).expanduser()
    if _same_file(out, src) or _real(out) == _real(src):
        return "" if out.absolute() == src.absolute() else " (the same file through another path)"
    if _inside(_real(out), _real(src)):
        return " (the output lies inside it)"
    return " (the output folder holds it)"
