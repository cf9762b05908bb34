"""Separation models: the paper's CNN, the default U-Net, and the registry that loads them."""
from .base import ModelConfig, SeparationModel
from .registry import ARCHITECTURES, DEFAULT_MODEL, ModelError, build, load, save

__all__ = ["ModelConfig", "SeparationModel", "ARCHITECTURES", "DEFAULT_MODEL", "ModelError",
           "build", "load", "save"]
