"""Export stage: a trained run as a deployment graph (:mod:`toolchain.ir`) and the files it becomes.

- :mod:`toolchain.export.quantize`: a trained :class:`~toolchain.snn.models.SpikingNetwork` onto
  Loihi's integer registers (:func:`~toolchain.export.quantize.quantize_model`), with a report of
  every rounding it made;
- :mod:`toolchain.export.run_loader`: a run folder (recipe, dataset, trained model) for commands
  (:func:`~toolchain.export.run_loader.load_run`);
- :mod:`toolchain.export.pipeline`: ``toolchain export``'s job (quantize, write, compare the
  accuracy before and after);
- the writers and readers of each format (netx HDF5, NIR, ONNX) in their own modules.

Submodules are imported on use: ``import toolchain.export`` stays cheap.
"""
