"""Benchmarks of pixelfold's fast paths (run the scripts from the repository root):

* ``python benchmarks/generator.py --device cpu``: images/s of the generators, against the
  straightforward implementation of ``benchmarks/reference_impl.py``, and peak memory;
* ``python benchmarks/train_step.py``: ms per training step (G and D, forward and backward,
  with R1) and peak memory per batch size.

See ``docs/benchmarks.md`` for the measured tables.
"""
