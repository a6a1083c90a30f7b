"""Compute-device selection: ``auto`` picks CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from selfnet.errors import DeviceError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a usable :class:`torch.device` or raise DeviceError."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return _tuned_cuda("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps' requested but Apple MPS is not available on this machine")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device '{name}' requested but CUDA is not available (torch {torch.__version__})")
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(f"device '{name}' does not exist: {torch.cuda.device_count()} CUDA device(s) found")
        return _tuned_cuda(name)
    raise DeviceError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def _tuned_cuda(name: str) -> torch.device:
    """A CUDA device with cuDNN autotuning on: patch and slice-batch shapes repeat, so tuning pays."""
    torch.backends.cudnn.benchmark = True
    return torch.device(name)
