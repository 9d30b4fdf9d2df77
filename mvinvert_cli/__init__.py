"""mvinvert: high-fidelity face self-occlusion recovery from one photo (MvInvert, AAAI 2022)."""

__version__ = "0.1.0"
