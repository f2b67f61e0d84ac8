"""covidct classify stage: COVID-19 probability and lung metrics from a chest CT + lung mask.

Research use only, not for clinical use. Modules: ``preprocess`` (Clara-compatible input),
``classifier`` / ``loading`` (bundle network), ``metrics`` (HU-threshold lung metrics),
``synthetic`` (COVID-like findings for training), ``results`` (CSV/JSON), ``overview`` (PNG),
``stage`` (the pipeline stage).
"""

__version__ = "0.1.0"
