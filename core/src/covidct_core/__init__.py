"""Shared core of the covidct pipeline. Research use only, not for clinical use."""

__version__ = "0.1.0"

RESEARCH_USE_DISCLAIMER = (
    "RESEARCH USE ONLY. Not a medical device; not for diagnosis or clinical decisions. "
    "Reference models are trained on synthetic findings and are not clinically validated."
)
