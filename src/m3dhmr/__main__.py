"""``python -m m3dhmr`` (also what ``torchrun -m m3dhmr train ...`` runs)."""

from m3dhmr.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
