"""NIR (the Neuromorphic Intermediate Representation, ``nir`` 1.0.8): the deployment graph written
and read back, without torch.

- :func:`to_nir_graph` / :func:`write_nir`: a deployment graph (:class:`toolchain.ir.Network`) as a
  ``nir.NIRGraph`` in float units, with the Loihi integers, the time step and the discretization
  in metadata (:mod:`~toolchain.formats.nir.writer`);
- :func:`from_nir_graph` / :func:`read_nir`: back to the deployment graph, bit-exactly for graphs
  on Loihi's grid, refusing others (:mod:`~toolchain.formats.nir.reader`);
- the mapping between the discrete CUBA neuron and NIR's continuous nodes:
  :mod:`~toolchain.formats.nir.convention`; safe file handling: :mod:`~toolchain.formats.nir.files`.

A float graph of another library runs as a torch module with
:func:`toolchain.export.nir_torch.nir_to_torch` and is quantized onto Loihi's registers by
:func:`toolchain.export.nir_quantize.quantize_nir_graph` (``toolchain convert``).

Every problem with a file or a graph is a :class:`NirError` (a :class:`toolchain.errors.FormatError`).
"""

from toolchain.formats.nir.convention import DEFAULT_DT_S, DISCRETIZATION, NirError
from toolchain.formats.nir.files import load_graph, save_graph
from toolchain.formats.nir.reader import from_nir_graph, read_nir
from toolchain.formats.nir.writer import to_nir_graph, write_nir

__all__ = [
    "DEFAULT_DT_S",
    "DISCRETIZATION",
    "NirError",
    "from_nir_graph",
    "load_graph",
    "read_nir",
    "save_graph",
    "to_nir_graph",
    "write_nir",
]
