"""Registrar's TFX pipeline: TFRS retrieval / ranking / multitask models.

Importing this package imports no TensorFlow or TFX; heavy imports live inside functions.
"""
