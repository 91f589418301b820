"""The rule of every numeric option, and the one check that applies it.

A rule says which numbers an option takes: whole or not, and the range. Every value is also finite
(no nan, no inf), so ``--fps nan`` and ``--fps inf`` are refused like ``--fps -2``. The stages keep
a table ``{field: Rule}`` beside their configs; the CLI checks the same table before it imports
torch, open_clip, faiss or h5py, so a bad option is refused in one line, at once, with nothing
written. This module imports nothing heavy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from c4c.errors import C4CError

MAX_INT = 2**31 - 1        # counts past this overflow the C libraries underneath
MAX_SEED = 2**32 - 1       # NumPy's seeds are 32-bit


@dataclass(frozen=True)
class Rule:
    """Which numbers an option takes: ``low <= value <= high`` (``low < value`` when ``above``)."""

    whole: bool                   # an int option
    low: float | None = None      # the smallest value allowed (None: no lower bound)
    high: float | None = None     # the largest value allowed (None: any finite value)
    above: bool = False           # ``low`` itself is refused
    below: bool = False           # ``high`` itself is refused

    def allows(self, value: Any) -> bool:
        """Whether ``value`` is a finite number of the right kind in range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.whole and not (isinstance(value, int) or (math.isfinite(value) and float(value).is_integer())):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.above and value == self.low)):
            return False
        if self.high is not None and (value > self.high or (self.below and value == self.high)):
            return False
        return True

    def describe(self) -> str:
        """What the option takes, in words: ``a finite number above 0``."""
        noun = "a whole number" if self.whole else "a finite number"
        low, high = _show(self.low), _show(self.high)
        if self.low is not None and self.high is not None:
            if self.whole and not self.above and not self.below:
                return f"{noun} from {low} to {high}"
            left = "(" if self.above else "["
            right = ")" if self.below else "]"
            return f"{noun} in {left}{low}, {high}{right}"
        if self.low is not None:
            return f"{noun} above {low}" if self.above else f"{noun} of at least {low}"
        if self.high is not None:
            return f"{noun} below {high}" if self.below else f"{noun} of at most {high}"
        return noun


def _show(bound: float | None) -> str:
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def count(low: int = 1, high: int = MAX_INT) -> Rule:
    """A whole number from ``low`` to ``high``."""
    return Rule(whole=True, low=low, high=high)


def positive(high: float | None = None) -> Rule:
    """A finite number above 0 (at most ``high``)."""
    return Rule(whole=False, low=0, above=True, high=high)


def non_negative(high: float | None = None) -> Rule:
    """A finite number of at least 0 (at most ``high``)."""
    return Rule(whole=False, low=0, high=high)


FRACTION = Rule(whole=False, low=0, high=1, below=True)   # [0, 1)
SEED = count(0, MAX_SEED)
WORKERS = count(0, 256)
FPS = positive(1000)                 # frames per second of video time
SECONDS = positive(10**7)            # a span of video time (windows, strides): about 4 months


def flag(option: str) -> str:
    """``batch_size`` -> ``--batch-size``; an option already written as a flag is kept."""
    return option if option.startswith("-") else "--" + option.replace("_", "-")


def check(option: str, value: Any, rule: Rule) -> None:
    """Raise a :class:`C4CError` naming ``option`` and ``value`` unless ``rule`` allows it (None: unset, fine)."""
    if value is None or rule.allows(value):
        return
    raise C4CError(f"{flag(option)} {shown(value)}: must be {rule.describe()}")


def shown(value: Any) -> str:
    """A value as the user would type it: ``-2.0`` -> ``-2``, ``nan`` -> ``nan``."""
    if isinstance(value, float):
        text = f"{value:g}"
        return text if math.isfinite(value) and float(text) == value else repr(value)
    return str(value) if isinstance(value, int) else repr(value)


def check_all(values: Mapping[str, Any] | Any, rules: Mapping[str, Rule]) -> None:
    """Check every option of ``rules`` that ``values`` (a dict, or a config with those attributes) holds."""
    for name, rule in rules.items():
        value = values.get(name) if isinstance(values, Mapping) else getattr(values, name, None)
        check(name, value, rule)


def need(condition: bool, problem: str, hint: str | None = None) -> None:
    """Raise a :class:`C4CError` with ``problem`` unless ``condition`` (options that disagree)."""
    if not condition:
        raise C4CError(problem, hint=hint)
