"""layerscope: what each layer of a vision model still knows about its input.

The public API, in a user's words: load a model and an image, read a layer's activations,
invert (reconstruct an image from a layer), descend any objective (and write your own from
:class:`Term`), results, errors; and every study by name (:func:`run_study`). The maths and
the studies live in places: ``layerscope.core`` (what every layer uses), ``layerscope.engine``
(the maths), ``layerscope.protocol`` (the run lifecycle), ``layerscope.studies``,
``layerscope.report`` and ``layerscope.apps`` (CLI, recipes, site, sweeps); the flat paths
keep working: ``layerscope.similarity`` (CKA, CCA, SVCCA, PWCCA),
``layerscope.sensitivity`` (D_f, G_f, R_f), ``layerscope.generation`` (class images),
``layerscope.studies`` (the registry), ``layerscope.inversion`` (the depth engine's batching:
``Job``, ``invert_jobs``).
"""

from . import _moved, studies  # _moved: the flat layout's paths (layerscope.similarity, …)
from ._version import __version__
from .core.errors import (
    ConfigError,
    ImageError,
    Interrupted,
    LayerNotFound,
    LayerscopeError,
    ModelNotFound,
    WeightsError,
    WeightsUnavailable,
)
from .engine import generation, similarity
from .engine import sensitivity as sensitivity
from .engine.descent import (
    AdamStep,
    GaussianBlur,
    GradientStep,
    Jitter,
    NormalizedStep,
    Schedule,
    descend,
)
from .engine.generation import (
    GeneratedImage,
    GenerationConfig,
    Stage,
    class_scores,
    generate_classes,
    generate_matching,
)
from .engine.images import SAMPLES, load_image, save_grid, save_image
from .engine.inversion import InversionConfig, InversionResult, initial_input, invert
from .engine.layers import (
    LayerInfo,
    aliases,
    default_layers,
    describe_layers,
    resolve_layers,
)
from .engine.layers import read_layers as activations
from .engine.merging import merge
from .engine.models import Model, available_models, load_model, load_state_dict, save_checkpoint
from .engine.objectives import (
    BatchNormPrior,
    ClassLogit,
    InputL1,
    L1Loss,
    LayerMatch,
    Objective,
    OutputMatch,
    Term,
    TotalVariation,
    evaluate,
)
from .engine.param import ImageParam
from .engine.results import TargetResult
from .engine.transforms import Pad, RandomRotate, RandomScale, Shift, Transform
from .studies import run_study

studies.registry()  # every study registered, its options declared (errors spell them)

__all__ = [
    "SAMPLES",
    "AdamStep",
    "BatchNormPrior",
    "ClassLogit",
    "ConfigError",
    "GaussianBlur",
    "GeneratedImage",
    "GenerationConfig",
    "GradientStep",
    "ImageError",
    "ImageParam",
    "InputL1",
    "Interrupted",
    "InversionConfig",
    "InversionResult",
    "Jitter",
    "L1Loss",
    "LayerInfo",
    "LayerMatch",
    "LayerNotFound",
    "LayerscopeError",
    "Model",
    "ModelNotFound",
    "NormalizedStep",
    "Objective",
    "OutputMatch",
    "Pad",
    "RandomRotate",
    "RandomScale",
    "Schedule",
    "Shift",
    "Stage",
    "TargetResult",
    "Term",
    "TotalVariation",
    "Transform",
    "WeightsError",
    "WeightsUnavailable",
    "__version__",
    "activations",
    "aliases",
    "available_models",
    "class_scores",
    "default_layers",
    "descend",
    "describe_layers",
    "evaluate",
    "generate_classes",
    "generate_matching",
    "generation",
    "initial_input",
    "invert",
    "load_image",
    "load_model",
    "load_state_dict",
    "merge",
    "resolve_layers",
    "run_study",
    "save_checkpoint",
    "save_grid",
    "save_image",
    "sensitivity",
    "similarity",
    "studies",
]


def __getattr__(name: str):
    """``ls.similarity``, ``ls.descent``, … : the flat layout's modules by attribute too."""
    if name in _moved.PLACES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
