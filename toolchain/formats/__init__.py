"""File formats of the deployment graph (:class:`toolchain.ir.Network`): read, written, recognised.

Below export and the simulators, and without torch (an import-linter contract in ``pyproject.toml``
keeps it so): :mod:`~toolchain.formats.netx` (lava-dl's netx HDF5), :mod:`~toolchain.formats.nir`
(NIR), :mod:`~toolchain.formats.detect` (which format a file holds, and opening it with what it
does not state), :mod:`~toolchain.formats.lower` (pooling folded into the next layer, as netx
needs), :mod:`~toolchain.formats.hdf5` (names in untrusted HDF5 files) and
:mod:`~toolchain.formats.onnx` (ONNX files read and run without trusting them). ONNX holds float
torch models, not the deployment graph: :mod:`toolchain.export.onnx` writes them from torch.
``toolchain.export`` quantizes trained models and writes them through these; ``toolchain.sim``
reads through them.
"""
