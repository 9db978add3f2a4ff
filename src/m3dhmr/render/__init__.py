"""CPU mesh rendering without OpenGL: :func:`rasterize` (z-buffer) and :func:`render_mesh`
(rasterise + Blinn-Phong shading, optionally over an image)."""

from m3dhmr.render.rasterizer import Fragments, rasterize
from m3dhmr.render.shading import LightSettings, RenderResult, render_mesh, shade, to_uint8, vertex_normals

__all__ = ["Fragments", "LightSettings", "RenderResult", "rasterize", "render_mesh", "shade", "to_uint8",
           "vertex_normals"]
