"""stochgrad.vae"""

__all__: list[str] = []
