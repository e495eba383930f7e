"""The persistent XLA compilation cache of the command-line entry points.

A second run of the same command (same model, shapes, jax version and machine) loads its
executables from disk instead of compiling them (minutes on a 2-core CPU). The cache lives in
`$H2O_JAX_XLA_CACHE`, else `$JAX_COMPILATION_CACHE_DIR`, else `~/.cache/h2o_jax/xla`; set
`H2O_JAX_XLA_CACHE=off` to disable it, and delete the folder to clear it (entries are keyed by
the program and the compiler version, so a stale entry is never used, only kept).
"""

from __future__ import annotations

import os

import jax

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "h2o_jax", "xla")


def cache_dir() -> str | None:
    """The folder the entry points cache compiled programs in, or None when disabled."""
    path = os.environ.get("H2O_JAX_XLA_CACHE") or os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_CACHE_DIR
    return None if path.lower() in ("off", "0", "none", "") else path


def enable_compilation_cache() -> str | None:
    """Points JAX's persistent cache at `cache_dir()` (every program, however quick to compile,
    is kept); returns the folder or None."""
    path = cache_dir()
    if path is None:
        return None
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
