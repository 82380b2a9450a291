"""The engine: models and their layers, objectives, the one descent loop, inversion and
generation, training's loop, and the maths of every study (similarity, sensitivity,
invertibility, ablation, spectra, metrics, recognition). Imports only :mod:`layerscope.core`;
knows nothing of runs, studies, the report or the command line."""
