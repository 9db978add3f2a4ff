"""Hand detection in whole images and videos (MediaPipe's hand models, packaged)."""

from m3dhmr.detect.hands import DetectedHand, HandDetector

__all__ = ["DetectedHand", "HandDetector"]
