"""Pure geometry functions: camera projection, crop maths, rotations, mesh normals, Procrustes alignment,
registration."""

from m3dhmr.geometry.camera import project
from m3dhmr.geometry.procrustes import align_w_scale, align_w_scale_batch
from m3dhmr.geometry.registration import RegistrationResult, RegistrationSettings, register_camera_space
from m3dhmr.geometry.registration_numpy import register_camera_space_numpy

__all__ = ["project", "align_w_scale", "align_w_scale_batch", "RegistrationResult", "RegistrationSettings",
           "register_camera_space", "register_camera_space_numpy"]
