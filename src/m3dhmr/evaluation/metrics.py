"""The FreiHAND protocol's metrics, re-exported: the definitions live in :mod:`m3dhmr.metrics`
(below both the evaluation and training's learning curve, which score with them).

``from m3dhmr.evaluation.metrics import freihand_metrics`` keeps working.
"""

from m3dhmr.metrics import (
    AUC_THRESHOLDS_M,
    F_THRESHOLDS_M,
    PER_SAMPLE_KEYS,
    SUMMARY_KEYS,
    MetricsResult,
    check_points,
    f_score,
    freihand_metrics,
    mean_distance,
    nearest_distances,
    pck_auc,
)

__all__ = ["AUC_THRESHOLDS_M", "F_THRESHOLDS_M", "PER_SAMPLE_KEYS", "SUMMARY_KEYS", "MetricsResult", "check_points",
           "f_score", "freihand_metrics", "mean_distance", "nearest_distances", "pck_auc"]
