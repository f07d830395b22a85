"""The building blocks of interpretability (Olah et al., Distill 2018) on one input.

- :mod:`.layer` -- one sample's activation at a conv layer, and which layers suit NMF;
- :mod:`.groups` -- neuron groups: the activation factorized by NMF, with class attribution;
- :mod:`.dictionary` -- the semantic dictionary: each position's strongest channels;
- :mod:`.fvcache` -- feature visualizations of units and directions, computed once and shared;
- :mod:`.examples` -- the dataset sample that most excites each unit or direction.
"""

from .dictionary import Dictionary, semantic_dictionary
from .examples import top_direction_examples
from .fvcache import FeatureCache, IconUpdate, direction_objective, feature_cache
from .groups import Groups, neuron_groups

__all__ = [
    "Dictionary",
    "FeatureCache",
    "Groups",
    "IconUpdate",
    "direction_objective",
    "feature_cache",
    "neuron_groups",
    "semantic_dictionary",
    "top_direction_examples",
]
