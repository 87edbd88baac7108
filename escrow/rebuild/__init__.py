"""Reproducibility: rebuild a recorded build, compare images layer by layer and file by file.

Public face:

* :mod:`escrow.rebuild.layers` — streaming readers for layer archives and ``docker save`` output
  (classic and OCI layouts, gzip/zstd-compressed layers), one :class:`~escrow.rebuild.layers.Entry`
  per archive member, hashed on the fly;
* :mod:`escrow.rebuild.compare` — entry-by-entry comparison of two layers after normalisation;
* :mod:`escrow.rebuild.manifests` — what changed between two build manifests (``escrow diff``);
* :mod:`escrow.rebuild.verify` — ``escrow rebuild``: inputs, phoenix rebuild, verdict.
"""
