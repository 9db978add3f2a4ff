"""The README's picture of ``m3dhmr app``: the page after a photo with two hands.

Starts ``m3dhmr app`` (the packaged model) on a free local port, opens it in headless
Chromium (Debian's ``chromium``) with Playwright, uploads the photo, waits for the
results and the 3D viewers, and saves a screenshot of the page; then stops the server
with Ctrl+C as a user would. The photo: two Sign Language Digits photos side by side (one
mirrored, so a right and a left hand; Apache-2.0, Mavi 2020; for the docs only, never in
the package), or the package's rendered two-hands example where those photos are missing.

    .venv/bin/python scripts/make_app_screenshot.py [--out docs/images/app.png]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIGN = REPO.parent / "shared" / "data" / "sign-language-digits" / "Dataset"


def two_hands(path: Path) -> Path:
    if SIGN.is_dir():
        right, left = (cv2.copyMakeBorder(cv2.imread(str(SIGN / d / name)), 50, 50, 50, 50, cv2.BORDER_REPLICATE)
                       for d, name in (("5", "IMG_1123.JPG"), ("1", "IMG_1119.JPG")))
        cv2.imwrite(str(path), np.concatenate([right, left[:, ::-1]], axis=1))
    else:
        from m3dhmr.app.examples import example_images

        shutil.copyfile(example_images()[2], path.with_suffix(".png"))
        path = path.with_suffix(".png")
    return path


def wait_for(url: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the app did not answer at {url} within {seconds:g} s")


def wait_drawn(canvas, seconds: float = 30) -> None:
    """Until the viewer's canvas shows more than its background."""
    canvas.wait_for(timeout=seconds * 1000)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pixels = cv2.imdecode(np.frombuffer(canvas.screenshot(), np.uint8), cv2.IMREAD_COLOR).reshape(-1, 3)
        if np.mean(np.abs(pixels.astype(int) - np.median(pixels, axis=0)).sum(1) > 30) > 0.02:
            time.sleep(1)  # a few more frames: the camera settles
            return
        time.sleep(0.5)
    raise SystemExit("a 3D viewer stayed blank")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "app.png")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/lib/chromium/chromium")
    args = ap.parse_args()
    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen([sys.executable, "-m", "m3dhmr", "app", "--port", str(port)])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            photo = two_hands(Path(tmp) / "two hands.jpg")
            wait_for(url)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium,
                                             args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
                # Tall enough for the whole page: Chromium redraws no WebGL canvas outside the viewport.
                page = browser.new_page(viewport={"width": 1280, "height": 1500})
                page.goto(url)
                page.locator("#photo-input input[type=file]").set_input_files(str(photo))
                expect(page.locator("#photo-status")).to_contain_text("hand(s) found", timeout=60_000)
                for i in range(2):
                    wait_drawn(page.locator(f"#photo-hand-{i} canvas"))
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.out), full_page=True)
                browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
