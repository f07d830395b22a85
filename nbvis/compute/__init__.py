"""Pure torch/numpy computations. Nothing here imports widget code."""
