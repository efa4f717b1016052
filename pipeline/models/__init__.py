"""Model code (kept apart from pipeline code): features, TFRS models, trainer."""
