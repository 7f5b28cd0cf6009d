"""What every part of pixelfold shares for robustness: user errors and the command-line
handler that reports them, safe tensor files, atomic writes, run-folder locks, memory
checks and the CPU memory cache.

``from pixelfold.utils import PixelfoldError, atomic_directory, load_tensor_file, check_finite``.
"""

from .allocator import cpu_memory_cache_enabled, enable_cpu_memory_cache
from .errors import (
    USER_ERRORS,
    CheckpointError,
    ConfigError,
    DataError,
    DiskFullError,
    MemoryLimitError,
    NonFiniteError,
    PixelfoldError,
    RunFolderError,
    TrainingInterrupted,
    debug_enabled,
    one_line,
    run_main,
)
from .files import (
    RunLock,
    apply_default_modes,
    atomic_directory,
    atomic_write_bytes,
    atomic_write_text,
    cleanup_leftovers,
    default_mode,
    disk_errors,
    pid_alive,
)
from .memory import available_memory, check_fits, format_bytes
from .tensors import (
    check_finite,
    frozen_parameters,
    load_state,
    load_tensor_file,
    module_tensors,
    non_finite,
    save_state,
    torchscript_names,
)

__all__ = [
    "USER_ERRORS",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DiskFullError",
    "MemoryLimitError",
    "NonFiniteError",
    "PixelfoldError",
    "RunFolderError",
    "RunLock",
    "TrainingInterrupted",
    "apply_default_modes",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "available_memory",
    "check_finite",
    "check_fits",
    "cleanup_leftovers",
    "cpu_memory_cache_enabled",
    "debug_enabled",
    "default_mode",
    "disk_errors",
    "enable_cpu_memory_cache",
    "format_bytes",
    "load_state",
    "load_tensor_file",
    "frozen_parameters",
    "module_tensors",
    "non_finite",
    "one_line",
    "pid_alive",
    "run_main",
    "save_state",
    "torchscript_names",
]
