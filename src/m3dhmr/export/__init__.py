"""Rig exporters: the skinned hand as binary glTF (:func:`write_glb`) and its skeleton as BVH (:func:`write_bvh`).

:class:`Rig` holds the rest hand (camera axes, metres); poses and animations are
(T, J, 4, 4) global joint transforms. See :mod:`m3dhmr.export.rig` for the maths.
"""

from __future__ import annotations

from m3dhmr.export.bvh import write_bvh
from m3dhmr.export.gltf import write_glb
from m3dhmr.export.rig import Rig

__all__ = ["Rig", "write_glb", "write_bvh"]
