"""``m3dhmr app`` in a real browser: headless Chromium (Debian's ``chromium``, which
``.ci/run`` installs) driven by Playwright, against the app served on a free local port
with the packaged model.

One test, in the order a person would go: a photo with a hand (the overlay shows, the 3D
viewer draws the hand, the .glb downloads and loads), then a file that is no image (a
message in the page, the server still answers, the upload is gone), then a short clip
(the annotated H.264 video plays in the page), and through it all nothing fetched from
outside this machine, by the page or by the server.
"""

from __future__ import annotations

import io
import shutil
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app extra is not installed (pip install 'm3dhmr[app]')")
pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # Gradio's use of pandas
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')")

SIGN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sign-language-digits" / "Dataset"
#: Debian's binary first (its /usr/bin/chromium wrapper works too).
CHROMIUM = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser")


def chromium_path() -> str | None:
    for name in CHROMIUM:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_local(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    return not isinstance(host, str) or host in ("localhost", "::1") or host.startswith("127.")


@pytest.fixture
def no_outside_connections(monkeypatch):
    """Every connection the server process tries to a non-loopback address, refused and listed."""
    tried = []
    connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address):
            tried.append(address)
            raise OSError(f"test: no network ({address})")
        return connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return tried


def photo_with_a_hand(folder: Path) -> Path:
    """A sign-language photo with room around the hand (the tests' data, never shipped), or
    the package's rendered example where those photos are missing."""
    path = folder / "hand photo.jpg"
    if SIGN.is_dir():
        img = cv2.imread(str(SIGN / "5" / "IMG_1123.JPG"))
        cv2.imwrite(str(path), cv2.copyMakeBorder(img, 50, 50, 50, 50, cv2.BORDER_REPLICATE))
    else:
        from m3dhmr.app.examples import example_images

        path.write_bytes(example_images(folder / "examples")[0].read_bytes())
    return path


def not_blank(png: bytes) -> float:
    """Share of a screenshot's pixels that differ from its most common colour."""
    pixels = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float(np.mean(np.abs(pixels.astype(int) - background).sum(1) > 30))


def test_app_in_a_browser(tmp_path, monkeypatch, no_outside_connections):
    from m3dhmr.app import ui
    from m3dhmr.app.examples import example_images
    from m3dhmr.app.handlers import AppModel
    from m3dhmr.inference.images import load_image
    from m3dhmr.inference.predictor import Predictor
    from m3dhmr.inference.video import write_video

    browser_path = chromium_path()
    if browser_path is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium; .ci/run installs it)")
    t0 = time.perf_counter()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "unused"))  # ui.build sets it; restored after
    model = AppModel(Predictor.from_pretrained(), tmp_path / "work")
    examples = example_images(tmp_path / "examples")
    model.warm_up(load_image(examples[0]))
    demo = ui.build(model, examples)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    ui.launch(demo, model, port=port, allowed=[examples[0].parent], block=False)
    photo = photo_with_a_hand(tmp_path)
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    frame = load_image(photo)
    clip = tmp_path / "clip.mp4"
    write_video(clip, [np.roll(frame, k, axis=1) for k in range(4)], fps=10)
    requests = []
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=browser_path,
                                         args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
            page = browser.new_page(viewport={"width": 1400, "height": 1400}, accept_downloads=True)
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            upload = page.locator("#photo-input input[type=file]")

            # A photo with a hand: the overlay, the table, the viewer and the downloads.
            upload.set_input_files(str(photo))
            status = page.locator("#photo-status")
            sync_api.expect(status).to_contain_text("1 hand(s) found", timeout=30_000)
            overlay = page.locator("#photo-overlay img")
            assert "overlay.jpg" in overlay.get_attribute("src")
            page.wait_for_function("() => document.querySelector('#photo-overlay img')?.naturalWidth > 0")
            sync_api.expect(page.locator("#photo-hands")).to_contain_text("right")
            canvas = page.locator("#photo-hand-0 canvas")
            canvas.wait_for(timeout=20_000)
            drawn, deadline = 0.0, time.monotonic() + 20
            while drawn < 0.02 and time.monotonic() < deadline:  # Babylon draws a few frames in
                time.sleep(0.5)
                drawn = not_blank(canvas.screenshot())
            assert drawn >= 0.02, f"the 3D viewer looks blank ({drawn:.1%} of its pixels differ from the background)"
            link = page.locator("#photo-files a[download$='.glb']").first
            with page.expect_download() as download:
                link.click()
            glb = tmp_path / download.value.suggested_filename
            download.value.save_as(glb)
            assert glb.name == "hand_0_right.glb"
            import pygltflib
            import trimesh

            doc = pygltflib.GLTF2().load(str(glb))
            assert doc.skins and doc.meshes and doc.nodes
            assert len(trimesh.load(io.BytesIO(glb.read_bytes()), file_type="glb").geometry) >= 1

            # A file that is no image: a message, the server alive, nothing left behind.
            before = {p.name for p in model.workdir.glob("request-*")}
            upload.set_input_files(str(bad))
            sync_api.expect(status).to_contain_text("Could not use this photo", timeout=30_000)
            sync_api.expect(status).to_contain_text("notes.jpg: cannot decode the image")
            assert str(tmp_path) not in status.inner_text()
            assert page.request.get(url).ok
            assert {p.name for p in model.workdir.glob("request-*")} == before
            assert not list(model.workdir.rglob("notes.jpg"))

            # A short clip: the annotated video plays in the page, one animated hand.
            page.get_by_role("tab", name="Video").click()
            page.locator("#video-input input[type=file]").set_input_files(str(clip))
            sync_api.expect(page.locator("#video-status")).to_contain_text("4 frames, 1 hand track(s)",
                                                                           timeout=60_000)
            page.wait_for_function("() => document.querySelector('#video-annotated video')?.readyState >= 1",
                                   timeout=20_000)
            duration = page.evaluate("() => document.querySelector('#video-annotated video').duration")
            assert 0.3 < duration < 0.5, duration
            sync_api.expect(page.locator("#video-files a[download='hand_0.bvh']")).to_have_count(1)
            browser.close()
    finally:
        demo.close()
    outside = sorted({u for u in requests if not u.startswith((url, "blob:", "data:"))})
    assert outside == [], f"the page fetched from outside this machine: {outside}"
    assert no_outside_connections == [], f"the server tried to connect outside: {no_outside_connections}"
    assert time.perf_counter() - t0 < 120
