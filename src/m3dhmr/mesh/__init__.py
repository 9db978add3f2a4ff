"""Mesh topology toolkit: validation, I/O, adjacency, spirals, hierarchy, regions, bundle.

numpy/scipy only at run time (plus trimesh for file I/O and fast-simplification for
decimation, imported where used).
"""

from m3dhmr.mesh.adjacency import (OneRings, boundary_edges, boundary_vertices, edges, half_edges, ordered_one_rings,
                                   vertex_adjacency)
from m3dhmr.mesh.bundle import (FORMAT_VERSION, TopologyBundle, TopologyParams, build_topology, default_cache_dir,
                                load_bundle, load_or_build_topology, save_bundle)
from m3dhmr.mesh.hierarchy import (Hierarchy, build_hierarchy, closest_point_barycentric, decimate, downsampling_matrix,
                                   upsampling_matrix)
from m3dhmr.mesh.io import read_mesh, write_mesh
from m3dhmr.mesh.regions import (BONE_REGION, FREIHAND16_JOINT_REGION, MANO_JOINT_REGION, make_regions_connected,
                                 region_pieces, regions_from_joint_regressor, regions_from_joints,
                                 regions_from_skinning)
from m3dhmr.mesh.spirals import region_spiral_indices, spiral_indices
from m3dhmr.mesh.validate import MeshError, check_triangle_mesh

__all__ = [
    "BONE_REGION", "FORMAT_VERSION", "FREIHAND16_JOINT_REGION", "Hierarchy", "MANO_JOINT_REGION", "MeshError",
    "OneRings", "TopologyBundle", "TopologyParams", "boundary_edges", "boundary_vertices", "build_hierarchy",
    "build_topology", "check_triangle_mesh", "closest_point_barycentric", "decimate", "default_cache_dir",
    "downsampling_matrix", "edges", "half_edges", "load_bundle", "load_or_build_topology",
    "make_regions_connected", "ordered_one_rings", "read_mesh", "region_pieces", "region_spiral_indices",
    "regions_from_joint_regressor", "regions_from_joints", "regions_from_skinning", "save_bundle",
    "spiral_indices", "upsampling_matrix", "vertex_adjacency", "write_mesh",
]
