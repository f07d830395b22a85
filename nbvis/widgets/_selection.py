"""The ``selected`` trait of the views that select a unit of a layer: ``(layer, unit)`` or None."""

from __future__ import annotations

from typing import Callable

import traitlets


def checked_selection(value, check: Callable[[object, object], tuple], unit_word: str = "unit"):
    """``value`` as the view stores it: None, or the ``(layer, unit)`` pair that ``check(layer,
    unit)`` validates and returns normalized. A value of another shape, and ``check``'s TypeError
    or ValueError, become the TraitError the user sees (with the contract's words)."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise traitlets.TraitError(f"selected is (layer, {unit_word}), e.g. ('fc1', 3), or None; got {value!r}")
    try:
        return check(*value)
    except (TypeError, ValueError) as err:
        raise traitlets.TraitError(str(err)) from None
