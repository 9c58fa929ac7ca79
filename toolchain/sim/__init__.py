"""Simulation of exported networks: the bit-accurate reference simulator and the Lava backend.

- :func:`toolchain.sim.reference.simulate`: a :class:`toolchain.ir.Network` on a batch of inputs
  (torch, vectorized), returning a :class:`~toolchain.sim.reference.SimulationResult`;
- :func:`toolchain.sim.lava_backend.simulate_lava`: a netx file in Lava (imports Lava);
- :mod:`toolchain.sim.inputs`: a dataset split and the recipe's encoding as a network's inputs;
- :mod:`toolchain.sim.compare`: spike-for-spike agreement of backends.

See ``docs/simulation.md``.
"""

from toolchain.sim.reference import SimulationResult, SimulationTiming, simulate

__all__ = ["SimulationResult", "SimulationTiming", "simulate"]
