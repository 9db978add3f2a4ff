"""What ``m3dhmr predict`` writes for an image: pictures, meshes and ``result.json``.

Layout of one image's folder: ``result.json`` (:func:`image_result_json`),
``overlay.jpg`` (every hand) and ``hand_<i>/`` per hand (:func:`save_hand_outputs`; with
an articulation fit also ``pose.json`` and ``hand.glb``, see :mod:`m3dhmr.inference.articulation`).
"""

from __future__ import annotations

from pathlib import Path


def write_image(path: Path, rgb, quality: int = 92) -> None:
    """(H, W, 3) uint8 RGB -> jpg/png file, atomically."""
    import cv2

    from m3dhmr.fileio import atomic_write_bytes

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, rgb[:, :, ::-1].copy(), params)
    if not ok:
        raise ValueError(f"{path}: OpenCV cannot encode this image format")
    atomic_write_bytes(path, buf.tobytes())


def save_hand_outputs(out_dir: Path, image, result, view_size: int = 256) -> list[Path]:
    """Write the pictures and meshes of one predicted hand into ``out_dir``; returns the paths."""
    from m3dhmr import viz
    from m3dhmr.mesh.io import write_mesh

    out_dir.mkdir(parents=True, exist_ok=True)
    pose = viz.draw_pose2d(image, result.joints2d)
    overlay = viz.overlay_mesh(image, result.vertices, result.faces, result.K)
    front, side = viz.render_front_side(result.vertices, result.faces, view_size)
    panel = viz.make_panel([pose, overlay, front, side], height=view_size)
    paths = {name: out_dir / name for name in
             ("pose2d.jpg", "overlay.jpg", "front.png", "side.png", "panel.jpg", "mesh.obj", "mesh.ply")}
    for name, img in (("pose2d.jpg", pose), ("overlay.jpg", overlay), ("front.png", front), ("side.png", side),
                      ("panel.jpg", panel)):
        write_image(paths[name], img)
    write_mesh(paths["mesh.obj"], result.vertices, result.faces)
    write_mesh(paths["mesh.ply"], result.vertices, result.faces)
    written = list(paths.values())
    if getattr(result, "articulation", None) is not None:
        from m3dhmr.inference.articulation import write_hand_files

        written += write_hand_files(out_dir, result)
    return written


def image_result_json(path, image, results, K) -> dict:
    """``result.json`` of one image: its size, the (3, 3) K used and the ``hands`` list."""
    H, W = image.shape[:2]
    return {"image": str(path), "image_size": [H, W], "K": [list(map(float, row)) for row in K],
            "units": {"joints3d": "m", "vertices": "m", "joints2d": "px", "camera": "opencv"},
            "hands": [r.to_json() for r in results]}


def save_image_outputs(out_dir: Path, path, image, results, K, view_size: int = 256) -> list[Path]:
    """Every output of one image (see the module docstring); returns the paths written."""
    import json

    from m3dhmr import viz
    from m3dhmr.fileio import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, r in enumerate(results):
        written += save_hand_outputs(out_dir / f"hand_{i}", image, r, view_size)
    overlay = viz.draw_hands(image, results)
    write_image(out_dir / "overlay.jpg", overlay)
    atomic_write_text(out_dir / "result.json", json.dumps(image_result_json(path, image, results, K), indent=1))
    return written + [out_dir / "overlay.jpg", out_dir / "result.json"]
