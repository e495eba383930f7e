"""topology_hash: equal for equal arrays (through a save/load round trip), different when any
array, dtype or level count differs; load_topology closes a damaged file and names it."""

import dataclasses
import zipfile

import numpy as np
import pytest

from h2o_jax.hand.random_topology import random_topology
from h2o_jax.hand.topology import load_topology, save_topology, topology_hash


def test_hash_survives_a_round_trip_and_sees_every_change(tmp_path):
    topology = random_topology((48, 24, 12, 6, 3))
    save_topology(topology, tmp_path / "t.npz")
    digest = topology_hash(topology)
    assert len(digest) == 64 and topology_hash(load_topology(tmp_path / "t.npz")) == digest
    spirals = [np.array(s) for s in topology.spirals]
    spirals[1][3, 2] = spirals[1][3, 1]  # one neighbour index
    changes = [
        dataclasses.replace(topology, spirals=tuple(spirals)),
        dataclasses.replace(topology, template_vertices_m=np.asarray(topology.template_vertices_m, np.float64)),
        dataclasses.replace(topology, up_weights=topology.up_weights[:-1]),
    ]
    assert len({digest, *(topology_hash(t) for t in changes)}) == 1 + len(changes)


def test_a_damaged_file_is_refused_and_closed(tmp_path):
    save_topology(random_topology((48, 24, 12, 6, 3)), tmp_path / "t.npz")
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(zipfile.BadZipFile):  # and pytest fails on an unclosed file (ResourceWarning)
        load_topology(tmp_path / "t.npz")
