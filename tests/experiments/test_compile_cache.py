"""The entry points' persistent compilation cache: a second process compiles nothing."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_second_process_loads_instead_of_compiling(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", H2O_JAX_XLA_CACHE=str(tmp_path / "xla"))
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
