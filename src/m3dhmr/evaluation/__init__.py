"""Evaluation: the FreiHAND protocol (:mod:`m3dhmr.metrics`), prediction files and scoring
(:mod:`.scoring`), predicting a whole split (:mod:`.predict_split`) and the synthetic
benchmark (:mod:`.benchmark`). Submodules are imported where they are used."""
