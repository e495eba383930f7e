"""The persistent XLA compilation cache of the command-line entry points.

A second run of the same command (same model, shapes, jax version and machine) loads its
executables from disk instead of compiling them (minutes on a 2-core CPU). The cache lives in
`$H2O_JAX_XLA_CACHE`, else `$JAX_COMPILATION_CACHE_DIR`, else `~/.cache/h2o_jax/xla`; set
`H2O_JAX_XLA_CACHE=off` to disable it, and delete the folder to clear it (entries are keyed by
the program and the compiler version, so a stale entry is never used, only kept).

Every program is kept, however quick to compile, unless `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`
sets a floor. The test suite sets 1 s: it calls the entry points inside its own processes, where a
floor of 0 would also store every eager op the other tests dispatch (thousands of entries, each
write scanning the folder under JAX's file lock; measured in BENCHMARKS.md).
"""

from __future__ import annotations

import os

import jax

DEFAULT_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "h2o_jax", "xla")
MIN_COMPILE_SECS_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"


def cache_dir() -> str | None:
    """The folder the entry points cache compiled programs in, or None when disabled."""
    path = os.environ.get("H2O_JAX_XLA_CACHE") or os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_CACHE_DIR
    return None if path.lower() in ("off", "0", "none", "") else path


def min_compile_secs() -> float:
    """Programs that compile faster than this are not stored: `$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`,
    else 0 (every program)."""
    text = os.environ.get(MIN_COMPILE_SECS_ENV, "").strip()
    if not text:
        return 0.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0.0:  # also rejects nan
        raise ValueError(f"{MIN_COMPILE_SECS_ENV} must be a number of seconds >= 0; got {text!r}")
    return seconds


def enable_compilation_cache() -> str | None:
    """Points JAX's persistent cache at `cache_dir()` (keeping every program that compiles in at
    least `min_compile_secs()`); returns the folder or None."""
    path = cache_dir()
    if path is None:
        return None
    min_secs = min_compile_secs()
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_secs)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
