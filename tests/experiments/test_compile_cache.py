"""The entry points' persistent compilation cache: a second process compiles nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments import compile_cache

_PROGRAM = """
import jax, jax.numpy as jnp
from experiments.compile_cache import enable_compilation_cache
events = []
jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
print("dir", enable_compilation_cache())
jax.jit(lambda x: jnp.sin(x) * 2 + 1)(jnp.ones(7)).block_until_ready()
print("hits", sum(e == "/jax/compilation_cache/cache_hits" for e in events))
"""


def _run(env):
    out = subprocess.run([sys.executable, "-c", _PROGRAM], env=env, capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.strip().splitlines())


def _user_env(tmp_path, **extra):
    """The environment of a user's shell: no compile-time floor (conftest sets one for the suite)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", H2O_JAX_XLA_CACHE=str(tmp_path / "xla"), **extra)
    if compile_cache.MIN_COMPILE_SECS_ENV not in extra:
        env.pop(compile_cache.MIN_COMPILE_SECS_ENV, None)
    return env


def test_second_process_loads_instead_of_compiling(tmp_path):
    env = _user_env(tmp_path)
    first = _run(env)
    assert first["dir"] == str(tmp_path / "xla") and first["hits"] == "0"
    entries = sorted(os.listdir(tmp_path / "xla"))
    assert entries
    second = _run(env)
    assert int(second["hits"]) >= 1
    assert sorted(os.listdir(tmp_path / "xla")) == entries  # nothing new was compiled and stored


def test_cache_folder_choice(monkeypatch):
    monkeypatch.delenv("H2O_JAX_XLA_CACHE", raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    assert compile_cache.cache_dir() == compile_cache.DEFAULT_CACHE_DIR
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/tmp/x")
    assert compile_cache.cache_dir() == "/tmp/x"
    monkeypatch.setenv("H2O_JAX_XLA_CACHE", "off")
    assert compile_cache.cache_dir() is None


def test_a_compile_time_floor_keeps_quick_programs_out(tmp_path, monkeypatch):
    # The suite's setting (conftest): in-process entry points must not store every eager op.
    out = _run(_user_env(tmp_path, **{compile_cache.MIN_COMPILE_SECS_ENV: "1000"}))
    assert out["hits"] == "0"
    assert not [name for name in os.listdir(tmp_path / "xla") if not name.startswith(".")]
    monkeypatch.setenv(compile_cache.MIN_COMPILE_SECS_ENV, "0.5")
    assert compile_cache.min_compile_secs() == 0.5
    monkeypatch.delenv(compile_cache.MIN_COMPILE_SECS_ENV)
    assert compile_cache.min_compile_secs() == 0.0
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv(compile_cache.MIN_COMPILE_SECS_ENV, bad)
        with pytest.raises(ValueError, match=f"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS must be .*{bad}"):
            compile_cache.min_compile_secs()
