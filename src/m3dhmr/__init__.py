"""m3dhmr: monocular 3D hand mesh recovery (M3DHMR), installable with pip alone.

Dimension legend used in every docstring (see :mod:`m3dhmr.conventions`):
B batch, V vertices, F faces, J joints (21), S spiral length, K DSC kernels,
C channels, H/W image height/width.
"""

__version__ = "0.1.0"
