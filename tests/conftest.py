"""Test-wide settings, before JAX starts: four forced CPU devices (multi-device tests) and a
per-process XLA compilation cache.

The cache matters for the training tests, which build the same step more than once (a run, an
interrupted run and its resume); a cached executable is the one XLA would build again, so results
are unchanged. It lives in a temporary folder removed when the process ends, unless
JAX_COMPILATION_CACHE_DIR names a folder to keep (faster reruns while developing).
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)

if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _XLA_CACHE_DIR = tempfile.mkdtemp(prefix="h2o_jax_test_xla_cache_")
    atexit.register(shutil.rmtree, _XLA_CACHE_DIR, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", _XLA_CACHE_DIR)
    # The entry points (experiments.compile_cache) use the same folder, not ~/.cache.
    os.environ.setdefault("H2O_JAX_XLA_CACHE", _XLA_CACHE_DIR)
