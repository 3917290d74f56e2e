"""df_policy: Diffusion Forcing visuomotor policies for real robots."""
__version__ = "0.1.0"
