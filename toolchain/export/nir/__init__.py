"""NIR (the Neuromorphic Intermediate Representation, ``nir`` 1.0.8): write, read back, and run.

- :func:`to_nir_graph` / :func:`write_nir`: a deployment graph (:class:`toolchain.ir.Network`) as a
  ``nir.NIRGraph`` in float units, with the Loihi integers, the time step and the discretization
  in metadata (:mod:`~toolchain.export.nir.writer`);
- :func:`from_nir_graph` / :func:`read_nir`: back to the deployment graph, bit-exactly for graphs
  on Loihi's grid, refusing others (:mod:`~toolchain.export.nir.reader`);
- :func:`nir_to_torch`: any float graph (snnTorch's ``export_to_nir``) as a torch module of the
  toolchain's own (:mod:`~toolchain.export.nir.torch_model`);
- the mapping between the discrete CUBA neuron and NIR's continuous nodes:
  :mod:`~toolchain.export.nir.convention`; safe file handling: :mod:`~toolchain.export.nir.files`.

Every problem with a file or a graph is a :class:`NirError` (a :class:`toolchain.errors.FormatError`).
"""

from toolchain.export.nir.convention import DEFAULT_DT_S, DISCRETIZATION, NirError
from toolchain.export.nir.files import load_graph, save_graph
from toolchain.export.nir.reader import from_nir_graph, read_nir
from toolchain.export.nir.torch_model import NirCuba, NirNetwork, nir_to_torch
from toolchain.export.nir.writer import to_nir_graph, write_nir

__all__ = [
    "DEFAULT_DT_S",
    "DISCRETIZATION",
    "NirCuba",
    "NirError",
    "NirNetwork",
    "from_nir_graph",
    "load_graph",
    "nir_to_torch",
    "read_nir",
    "save_graph",
    "to_nir_graph",
    "write_nir",
]
