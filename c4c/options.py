"""Options declared once: a config field carries the option's type, default, help and rule.

A stage's config is a dataclass whose option fields are made with :func:`option`: the annotation is
the option's type (a ``Literal`` from :mod:`c4c.choices` for a fixed set of values), the default is
the option's default, and the field's metadata holds the help text, extra flags and the numeric
rule. The command line builds its options from these fields (:func:`c4c.cli.options.from_config`),
the library checks a config against them (:func:`check_config`), so nothing is said twice.

Options that several commands share are declared here, in small groups that configs inherit; a
group's ``PANEL`` names the ``--help`` panel its options are listed under. This module imports
nothing heavy: the command line reads it before it parses anything. It sits above the tables whose
names are choices (dataset formats).
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from c4c import choices
from c4c.datasets.registry import DatasetName
from c4c.errors import C4CError
from c4c.option_rules import SECONDS, WORKERS, Rule, check, flag

_KEY = "c4c.option"


@dataclass(frozen=True)
class OptionInfo:
    """What the command line says of an option besides its type and default."""

    help: str
    flags: tuple[str, ...] = ()      # e.g. ("--out", "-o"); empty: --field-name
    rule: Rule | None = None         # numbers: finite and in range
    show_default: bool = True        # False where the help says the default in words
    panel: str | None = None         # the --help panel [default: the PANEL of the field's group]


def option(default: Any = MISSING, help: str = "", *, flags: tuple[str, ...] = (), rule: Rule | None = None,
           factory: Any = MISSING, show_default: bool = True, panel: str | None = None) -> Any:
    """A dataclass field that is also a command-line option (no ``default``: a required option)."""
    info = OptionInfo(help=help, flags=flags, rule=rule, show_default=show_default, panel=panel)
    return field(default=default, default_factory=factory, metadata={_KEY: info})


def info_of(f: Field) -> OptionInfo | None:
    """The option declared by field ``f`` (None: the field is no option, e.g. a value another option makes)."""
    return f.metadata.get(_KEY)


def option_fields(config_cls: type) -> list[Field]:
    """The fields of ``config_cls`` that are options: the class's own first, then its groups' from left to
    right (its ``__mro__``), each group's in declaration order."""
    found = [f for f in fields(config_cls) if info_of(f) is not None]
    return sorted(found, key=lambda f: config_cls.__mro__.index(_declaring_class(config_cls, f.name)))


def _declaring_class(config_cls: type, name: str) -> type:
    """The class of ``config_cls.__mro__`` that declares field ``name``."""
    return next(klass for klass in config_cls.__mro__ if name in klass.__dict__.get("__annotations__", {}))


def types_of(config_cls: type) -> dict[str, Any]:
    """Field name -> its resolved type (``X | None`` as ``Optional[X]``, which typer reads)."""
    return {name: _plain_union(kind) for name, kind in typing.get_type_hints(config_cls).items()}


def _plain_union(kind: Any) -> Any:
    if isinstance(kind, types.UnionType):
        return Union[kind.__args__]  # noqa: UP007  (typer reads typing.Union, not X | Y)
    return kind


def panel_of(config_cls: type, name: str) -> str | None:
    """The ``--help`` panel of option ``name``: its own, else the ``PANEL`` of the class that declares the
    field (or that class inherits)."""
    own = next((info_of(f) for f in fields(config_cls) if f.name == name), None)
    if own is not None and own.panel:
        return own.panel
    return getattr(_declaring_class(config_cls, name), "PANEL", None)


def rules_of(config_cls: type) -> dict[str, Rule]:
    """Option name -> its numeric rule, for every option of ``config_cls`` that has one."""
    return {f.name: info.rule for f in option_fields(config_cls) if (info := info_of(f)).rule is not None}


def allowed_values(kind: Any) -> tuple[Any, ...] | None:
    """The values a ``Literal`` type (or ``Optional`` of one) allows; None for any other type."""
    if typing.get_origin(kind) is Literal:
        return typing.get_args(kind)
    if typing.get_origin(kind) is Union:
        for arg in typing.get_args(kind):
            if typing.get_origin(arg) is Literal:
                return typing.get_args(arg)
    return None


def check_config(cfg: Any) -> None:
    """Every option of ``cfg`` one of its choices and within its rule (light: no torch). Library callers
    get the checks the command line's types give."""
    kinds = types_of(type(cfg))
    for f in option_fields(type(cfg)):
        value, name = getattr(cfg, f.name), flag_of(f)
        allowed = allowed_values(kinds[f.name])
        if allowed is not None and value is not None and value not in allowed:
            raise C4CError(f"unknown {name} {value!r}", hint=f"choose one of: {', '.join(map(str, allowed))}")
        rule = info_of(f).rule
        if rule is not None:
            check(name, value, rule)


def flag_of(f: Field) -> str:
    """The long flag of option field ``f``: its first declared ``--`` flag, else ``--field-name``."""
    return next((name for name in info_of(f).flags if name.startswith("--")), flag(f.name))


# --- options that several commands share ---------------------------------------------------------
@dataclass(kw_only=True)
class OnDevice:
    """Where a command computes."""

    PANEL: ClassVar[str] = "Hardware"
    device: str = option("auto", "auto (a CUDA GPU when there is one), cpu, cuda or cuda:N.")


@dataclass(kw_only=True)
class Hardware(OnDevice):
    """Where and how a command computes, and how many processes read its input."""

    amp: choices.Amp = option("auto", "Autocast precision: auto (bf16 on GPU, none on CPU), bf16, fp16 or none.")
    workers: int = option(2, "Worker processes reading the input (0: read in the main process).",
                          flags=("--workers", "-j"), rule=WORKERS)


@dataclass(kw_only=True)
class Forced:
    """A command that compares which models made its files."""

    force: bool = option(False, "Go on although the files were made by different models (a warning instead of an "
                                "error).")


@dataclass(kw_only=True)
class QueryModel(OnDevice, Forced):
    """The model that encodes a search query: the one the index names, or a run of that same model."""

    PANEL: ClassVar[str] = "Model"
    run: Path | None = option(None, "Run whose text tower encodes the query [default: the model the index names]; "
                                    "must be the same model.")
    precision: choices.TextPrecision = option("fp32", "Text tower weights: fp32, or bf16 (faster on a CPU; query "
                                                      "embeddings within about 1e-4 in cosine).")


@dataclass(kw_only=True)
class Replaces:
    """A command whose output may already exist."""

    overwrite: bool = option(False, "Replace an existing output.")


@dataclass(kw_only=True)
class StoredFrames:
    """The frame store a command reads."""

    PANEL: ClassVar[str] = "Data"
    frames: Path = option(help="Frame store from `c4c extract`: FRAMES.h5, or a shard-set folder.")
    skip_missing: bool = option(False, "Drop annotated videos that are not in the frame store (counted in the log) "
                                       "instead of stopping.")


@dataclass(kw_only=True)
class AnnotatedSplit:
    """One split of an annotated dataset, or (left out) every video of the frame store."""

    PANEL: ClassVar[str] = "Data"
    dataset: DatasetName | None = option(None, "Annotation format (see data/README.md).")
    ann: Path | None = option(None, "Annotation file or folder, with --dataset (see data/README.md).")
    split: choices.Split = option("test", "Split of the annotations: train, val or test.")


@dataclass(kw_only=True)
class Checkpointed:
    """Which weights of a run folder."""

    PANEL: ClassVar[str] = "Model"
    checkpoint: str | None = option(None, "Weights of the run: best (falls back to the newest), latest, or a "
                                          "checkpoint folder [default: best; a library: as before].")


@dataclass(kw_only=True)
class ModelSource(Checkpointed):
    """The model that encodes your own videos: a trained run, or zero-shot CLIP."""

    run: Path | None = option(None, "Run folder of `c4c finetune`, `c4c pretrain` or `c4c caption train` (or --clip "
                                    "for zero-shot).")
    clip: str | None = option(None, "Zero-shot CLIP instead of a run: an open_clip model name (ViT-B-32, ...), "
                                    "'tiny', or a JSON model config; the video is its frames' mean.")
    pretrained: str | None = option(None, "With --clip: an open_clip pretrained tag, a local weights file, or 'none' "
                                          "(random, seeded) [default: openai].")
    activation: choices.Activation | None = option(
        None, "With --clip: CLIP's activation: auto (QuickGELU for OpenAI weights), quickgelu or gelu "
              "[default: auto; a library: as before].")


@dataclass(kw_only=True)
class Moments:
    """Own videos cut into overlapping windows, one embedding each."""

    PANEL: ClassVar[str] = "Moments"
    window: float | None = option(None, "Own videos: one embedding per window of this many seconds (moments), not one "
                                        "per video; at least one frame interval of the stored frames.", rule=SECONDS)
    stride: float | None = option(None, "Seconds from one window's start to the next, from one frame interval up to "
                                        "the window [default: half the window, at least one frame interval].",
                                  rule=SECONDS)
