"""KDGAN: knowledge distillation with generative adversarial networks (Wang et al., NeurIPS 2018)."""

__version__ = "0.1.0"
