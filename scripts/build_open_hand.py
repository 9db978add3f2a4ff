"""Rebuild the open hand asset (src/m3dhmr/hand/assets/open_hand.safetensors), deterministically.

Usage: python scripts/build_open_hand.py [--out PATH]
Prints the sha256 of the written file; a second run prints the same digest.
"""

from __future__ import annotations

import argparse
import logging

from m3dhmr.hand.build import ASSET_PATH, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ASSET_PATH), help="output file (default: the packaged asset)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"sha256={main(args.out)}")
