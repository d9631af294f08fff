"""stochgrad.relaxed"""

__all__: list[str] = []
