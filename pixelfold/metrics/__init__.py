"""Evaluation and efficiency metrics.

``from pixelfold.metrics import count_params, count_macs, profile_table`` (efficiency) and
``from pixelfold.metrics import compute_metrics, compute_ppl, compute_fd_dinov2`` (image
quality: FID, KID, precision/recall, IS through torch-fidelity; PPL; FD-DINOv2), of a generator
or of a set of generated images, with reports that compare only under the same protocol.
"""

from .conditional import ClassConditioned, ClassMetrics, compute_class_metrics
from .fd_dinov2 import (
    DINOV2_MODEL,
    DinoV2Features,
    compute_dinov2_statistics,
    compute_fd_dinov2,
    load_dinov2,
)
from .fidelity import compute_inception_statistics, compute_metrics, kid_subsets, versions
from .ppl import compute_ppl, lpips_vgg16, trim_percentiles
from .profile import ModuleCost, count_macs, count_params, module_costs, profile_table
from .report import MetricsReport, protocol_differences
from .sources import (
    QUANTIZATION,
    GeneratorSource,
    RealImages,
    is_model_folder,
    is_statistics,
    resolve_generated,
    to_uint8,
)
from .statistics import (
    FeatureStatistics,
    feature_statistics,
    frechet_distance,
    load_statistics,
    save_statistics,
)
from .torchscript import NoLogitsError, offline_inception_weights
from .weights import MissingWeightsError, WeightsError, resolve_weights

__all__ = [
    "DINOV2_MODEL",
    "ClassConditioned",
    "ClassMetrics",
    "QUANTIZATION",
    "DinoV2Features",
    "FeatureStatistics",
    "GeneratorSource",
    "MetricsReport",
    "MissingWeightsError",
    "ModuleCost",
    "NoLogitsError",
    "RealImages",
    "WeightsError",
    "compute_class_metrics",
    "compute_dinov2_statistics",
    "compute_fd_dinov2",
    "compute_inception_statistics",
    "compute_metrics",
    "compute_ppl",
    "count_macs",
    "count_params",
    "feature_statistics",
    "frechet_distance",
    "is_model_folder",
    "is_statistics",
    "kid_subsets",
    "load_dinov2",
    "load_statistics",
    "lpips_vgg16",
    "module_costs",
    "offline_inception_weights",
    "profile_table",
    "protocol_differences",
    "resolve_generated",
    "resolve_weights",
    "save_statistics",
    "to_uint8",
    "trim_percentiles",
    "versions",
]
