"""Memory planning: estimate what the in-RAM path needs and stop early if the machine lacks it.

The in-RAM path holds the input, its normalised float32 copy, the z-interpolated float32 volume
and the float32 output at once (plus training patch pools). Rather than being killed by the OS
half-way, selfnet compares that with the memory available (``MemAvailable``, a cgroup limit, or
``SELFNET_MEMORY_LIMIT_GB``) and points to the chunked OME-Zarr path when it cannot fit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from selfnet.errors import ResourceError

__all__ = ["CHUNKED_HINT", "ENV_LIMIT", "available_bytes", "check_fits", "restore_bytes", "train_bytes"]

ENV_LIMIT = "SELFNET_MEMORY_LIMIT_GB"
"""Environment variable capping the memory selfnet plans to use (GiB)."""
OVERHEAD_BYTES = 768 * 2**20
"""Python, torch, the networks and one inference batch of activations."""
REFINE_BYTES_PER_VOXEL = 90  # training/refine.py's peak per voxel of its pseudo-object (restoration, 3D FFT blur, pairs; measured 85)
REFINE_MAX_ISO_VOXELS = 16_000_000  # training/refine.py's pseudo-object at most: plenty for its pairs, bounded memory
_MEMINFO = Path("/proc/meminfo")
_CGROUP_V2 = Path("/sys/fs/cgroup")
_CGROUP_V1 = Path("/sys/fs/cgroup/memory")
_NO_LIMIT = 2**60


def _n_iso(n_raw: int, ratio: float) -> int:
    """Isotropic planes spanned by ``n_raw`` planes ``ratio`` apart (as :func:`selfnet.sampling.n_iso`)."""
    return int(math.floor((n_raw - 1) * ratio + 1e-6)) + 1


def restore_bytes(shape: tuple[int, int, int], itemsize: int, ratio: float, out_itemsize: int = 4) -> int:
    """Peak bytes of an in-RAM restore: input, normalised copy, isotropic volume, output, conversion."""
    z, y, x = (int(n) for n in shape)
    raw, iso = z * y * x, _n_iso(z, ratio) * y * x
    conversion = 0 if out_itemsize == 4 else iso * (4 + out_itemsize)
    return raw * (itemsize + 4) + 2 * 4 * iso + conversion + OVERHEAD_BYTES


def train_bytes(shape: tuple[int, int, int], itemsize: int, ratio: float, *, patch_size: int,
                pool_size: int, oversample: int = 4, refine: bool = False) -> int:
    """Peak bytes of training: preparing its data (input, normalised copy, isotropic copy, patch candidates),
    or with ``refine`` (a PSF file) the refinement's restoration, turned copy and 3D blur if that is more."""
    z, y, x = (int(n) for n in shape)
    raw, iso = z * y * x, _n_iso(z, ratio) * y * x
    full = patch_size + 2 * (math.ceil(2 * ratio) + 2)
    candidates = oversample * pool_size * (full**2 + patch_size**2) * 4
    prepare = raw * (itemsize + 4) + 4 * iso + candidates
    refining = raw * itemsize + REFINE_BYTES_PER_VOXEL * min(iso, REFINE_MAX_ISO_VOXELS) if refine else 0
    return max(prepare, refining) + OVERHEAD_BYTES


def available_bytes() -> int | None:
    """Memory this process may still use: the least of MemAvailable, cgroup room and the env cap."""
    values = [v for v in (_meminfo_available(), _cgroup_available(), _env_limit()) if v is not None]
    return min(values) if values else None


CHUNKED_HINT = "write an OME-Zarr instead (-o OUT.ome.zarr) or pass --chunked to work block by block in bounded memory"
"""What to do when the in-RAM path does not fit: the chunked path trains on a bounded subset."""


def check_fits(needed: int, task: str, hint: str = CHUNKED_HINT) -> None:
    """Raise :class:`ResourceError` if ``needed`` bytes exceed what is available (unknown: pass)."""
    free = available_bytes()
    if free is None or needed <= free:
        return
    raise ResourceError(f"not enough memory: {task} in RAM needs about {_gib(needed)} "
                        f"but only {_gib(free)} is available: {hint}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _env_limit() -> int | None:
    text = os.environ.get(ENV_LIMIT, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value * 2**30) if math.isfinite(value) and value > 0 else None


def parse_meminfo(text: str) -> int | None:
    """``MemAvailable`` (bytes) from the text of /proc/meminfo, or None if absent."""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def _meminfo_available() -> int | None:
    try:
        found = parse_meminfo(_MEMINFO.read_text())
    except OSError:
        found = None
    if found is not None:
        return found
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_available() -> int | None:
    """Room left under a container memory limit (cgroup v2, else v1), or None without a limit."""
    for limit_file, usage_file in ((_CGROUP_V2 / "memory.max", _CGROUP_V2 / "memory.current"),
                                   (_CGROUP_V1 / "memory.limit_in_bytes", _CGROUP_V1 / "memory.usage_in_bytes")):
        limit = _read_int(limit_file)
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = max(0, (_read_int(usage_file) or 0) - _reclaimable(limit_file.parent / "memory.stat"))
        return max(0, limit - usage)
    return None


def _reclaimable(stat_file: Path) -> int:
    """Page cache the kernel can drop (``inactive_file`` of memory.stat), counted as free."""
    try:
        lines = stat_file.read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        name, _, value = line.partition(" ")
        if name in ("inactive_file", "total_inactive_file") and value.strip().isdigit():
            return int(value)
    return 0
