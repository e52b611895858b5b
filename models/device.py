"""Pick the device once: CUDA when there is one, else CPU; give the memory of dropped models back."""

import ctypes
import gc

import torch


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def release_memory() -> bool:
    """After a model was dropped: collect it, and hand the freed memory back to the system — glibc keeps
    freed heap pages (a model's many mid-sized tensors) for reuse unless asked (``malloc_trim``), and the
    CUDA allocator its blocks. Returns whether glibc trimmed (False: not glibc, or nothing to trim)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False
