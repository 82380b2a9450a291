"""layerscope: what each layer of a vision model still knows about its input."""

from . import sensitivity
from .errors import (
    ConfigError,
    ImageError,
    Interrupted,
    LayerNotFound,
    LayerscopeError,
    ModelNotFound,
    WeightsError,
    WeightsUnavailable,
)
from .images import SAMPLES, load_image, save_grid, save_image
from .inversion import (
    PRESETS,
    AdamStep,
    GaussianBlur,
    GradientStep,
    InversionConfig,
    InversionResult,
    Jitter,
    Job,
    L1Loss,
    NormalizedStep,
    Schedule,
    TargetResult,
    invert,
    invert_jobs,
)
from .layers import (
    LayerInfo,
    activations,
    aliases,
    default_layers,
    describe_layers,
    resolve_layers,
    staged_forward,
)
from .models import Model, available_models, load_model, load_state_dict

__version__ = "0.1.0"

__all__ = [
    "PRESETS",
    "SAMPLES",
    "AdamStep",
    "ConfigError",
    "GaussianBlur",
    "GradientStep",
    "ImageError",
    "Interrupted",
    "InversionConfig",
    "InversionResult",
    "Jitter",
    "Job",
    "L1Loss",
    "LayerInfo",
    "LayerNotFound",
    "LayerscopeError",
    "Model",
    "ModelNotFound",
    "NormalizedStep",
    "Schedule",
    "TargetResult",
    "WeightsError",
    "WeightsUnavailable",
    "__version__",
    "activations",
    "aliases",
    "available_models",
    "default_layers",
    "describe_layers",
    "invert",
    "invert_jobs",
    "load_image",
    "load_model",
    "load_state_dict",
    "resolve_layers",
    "save_grid",
    "save_image",
    "sensitivity",
    "staged_forward",
]
