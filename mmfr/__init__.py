"""mmfr: a reproducible build graph from public multimodal data to reasoning datasets,
trained vision-language models and benchmark scores (the MMFineReason recipe)."""

__version__ = "0.1.0"
