"""Option types shared by the commands: one name, one meaning, one help text, everywhere.

Choices are ``Literal`` types from :mod:`c4c.choices`, so ``--help`` lists them and a bad value is a
usage error before anything runs. Options that mirror a stage config's field take their default from
that field (:func:`with_settings`), so a default is written once, in the config.
"""

import inspect
import math
import typing
from dataclasses import MISSING, dataclass, fields
from typing import Annotated, Callable, ClassVar, List, Optional

import typer

from c4c import choices, options
from c4c.errors import C4CError

# --- options of the command line only (no config field holds them as the user says them) -----------
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors: no progress bar, no info lines.")]


@dataclass(kw_only=True)
class MsrvttFlag:
    """A flag that becomes a reader option of the annotations (``dataset_options``)."""

    PANEL: ClassVar[str] = "Data"
    msrvtt_train: Optional[choices.MsrvttTrain] = options.option(
        None, "MSR-VTT training split: 9k, 7k or full (the 6,513/497/2,990 captioning split) "
              "[default: 9k for retrieval, full for captioning].")


@dataclass(kw_only=True)
class ReaderFlags(MsrvttFlag):
    """The flags that become reader options of a command that reads a val split too."""

    activitynet_val2: bool = options.option(
        False, "ActivityNet: read val_2.json as the val split. Every one of its videos is also in val_1, the test "
               "split, so selecting on it sees test videos.", flags=("--activitynet-val2-as-val",))


def reader_options(settings: dict, *, task: str = "retrieval") -> dict:
    """Take the reader flags out of a command's ``settings``; the ``dataset_options`` they make."""
    from c4c.stages.pairs import dataset_options

    msrvtt_train, activitynet_val2 = settings.pop("msrvtt_train"), settings.pop("activitynet_val2", False)
    return dataset_options(settings.get("dataset"), msrvtt_train, task=task, activitynet_val2=activitynet_val2)


# --- options declared by config fields -----------------------------------------------------------
def from_config(*config_classes: type) -> Callable:
    """Decorator: the command also takes every option field of ``config_classes`` (type, default, help,
    flags and panel as the field declares them, :mod:`c4c.options`) that it does not declare itself;
    their values arrive in the command's ``**settings``. The first class that has a field wins."""

    def decorate(func: Callable) -> Callable:
        hints = typing.get_type_hints(func, include_extras=True)
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(func).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in own}
        extra = []
        for config_cls in config_classes:
            kinds = options.types_of(config_cls)
            for f in options.option_fields(config_cls):
                if f.name in taken:
                    continue
                taken.add(f.name)
                extra.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=_default(f),
                                               annotation=option_type(config_cls, f.name, kinds[f.name])))
        func.__signature__ = inspect.Signature(own + extra)
        func.__annotations__ = {p.name: p.annotation for p in own + extra}
        return func

    return decorate


def option_type(config_cls: type, name: str, kind: object = None) -> object:
    """The ``Annotated`` typer type of option ``name`` of ``config_cls``."""
    declared = next(f for f in fields(config_cls) if f.name == name)
    info = options.info_of(declared)
    kind = options.types_of(config_cls)[name] if kind is None else kind
    return Annotated[kind, typer.Option(*info.flags, help=info.help, show_default=info.show_default,
                                        rich_help_panel=options.panel_of(config_cls, name))]


def _default(f) -> object:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return inspect.Parameter.empty


def choice_list(allowed: tuple[str, ...]) -> Callable:
    """A typer callback that checks every value of a repeatable option against ``allowed``
    (typer cannot take a list of a ``Literal``)."""

    def check(values: List[str]) -> List[str]:
        for value in values or []:
            if value not in allowed:
                raise typer.BadParameter(f"{value!r} is not one of {', '.join(map(repr, allowed))}.")
        return values

    return check


def config_fields(config_cls: type, values: dict) -> dict:
    """The entries of ``values`` that are fields of ``config_cls``."""
    names = {f.name for f in fields(config_cls)}
    return {k: v for k, v in values.items() if k in names}


def parse_params(pairs: List[str], option: str, *, nested: bool = False, whole: bool = False) -> dict:
    """``NAME=VALUE`` pairs (``METHOD.NAME=VALUE`` when ``nested``) with numeric values, as a dict.

    ``--param nprobe=32`` -> ``{"nprobe": 32}``; ``--rerank-param dsl.temperature=1`` ->
    ``{"dsl": {"temperature": 1}}``. Whole numbers become ints; every value is finite (and whole with
    ``whole``)."""
    example = "dsl.temperature=1" if nested else "nprobe=32"
    params: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if nested:
            method, dot, name = key.partition(".")
        else:
            method, dot, name = "", ".", key
        if not sep or not dot or not name or (nested and not method):
            raise C4CError(f"{option} {pair!r}: write {'METHOD.' if nested else ''}NAME=VALUE, e.g. {example}")
        try:
            number = float(value)
        except ValueError:
            raise C4CError(f"{option} {pair!r}: the value must be a number") from None
        if not math.isfinite(number) or (whole and not number.is_integer()):
            raise C4CError(f"{option} {pair}: the value must be a finite {'whole ' if whole else ''}number")
        number = int(number) if number.is_integer() else number
        if nested:
            params.setdefault(method, {})[name] = number
        else:
            params[name] = number
    return params
