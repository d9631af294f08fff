"""Type aliases shared by the subpackages."""

from typing import TypeAlias

import torch

# What torch.distributions' sample/rsample accept (torch.types._size, which is private).
SampleShape: TypeAlias = torch.Size | list[int] | tuple[int, ...]
