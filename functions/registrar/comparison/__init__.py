"""Comparing two versions (of one model, or of two models of the same type): metrics side by side with which is
better, evaluation, training config, lineage, registration and deploy dates."""
