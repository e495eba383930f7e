"""Test-wide settings, before JAX starts: four forced CPU devices (multi-device tests) and an
XLA compilation cache shared by every process of the test run.

The cache matters for the training tests, which build the same programs many times (a run, an
interrupted run and its resume, the CLI subprocesses, the same tiny preset in several files); a
cached executable is the one XLA would build again, so results are unchanged. The first process
(pytest itself, or the xdist controller) makes a temporary folder and passes it to its workers
and subprocesses through JAX_COMPILATION_CACHE_DIR, so a program one worker compiled is loaded by
the other; the folder is removed when that process ends. A size limit is set because it turns
on JAX's file lock around cache reads and writes (two workers may write the same entry).
JAX_COMPILATION_CACHE_DIR names a folder to use and keep instead (faster reruns while developing).
"""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):  # the run's first process; workers inherit it
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="h2o_jax_test_xla_cache_")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
# > 0 turns on JAX's file lock around cache reads and writes (two processes may write one entry).
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(16 << 30))
# The entry points (experiments.compile_cache) use the same folder, not ~/.cache.
os.environ.setdefault("H2O_JAX_XLA_CACHE", os.environ["JAX_COMPILATION_CACHE_DIR"])
# Only programs that take >= 1 s to compile are stored (JAX's default). The entry points keep every
# program (floor 0), and the tests call them inside this process: with floor 0 every eager op of
# every later test was stored, each write scanning the whole folder under the lock, which made
# eager compiles 4x slower by the end of the run (BENCHMARKS.md, "The test suite").
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
# Also when something imported JAX before this file (its options read the environment on import).
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]))
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_addoption(parser):
    parser.addoption("--compile-log", default=None, metavar="DIR",
                     help="record every JAX compilation event of the test processes in DIR "
                          "(summary: python -m experiments.compile_report DIR)")


def pytest_configure(config):
    folder = config.getoption("--compile-log")
    if folder:  # in the controller and in every xdist worker
        from experiments.compile_report import CompileLog

        CompileLog(folder)
