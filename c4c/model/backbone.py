"""Build the CLIP backbone with open_clip: by model name, the built-in `tiny` config or a JSON config,
with weights from an open_clip pretrained tag, a local file, or none (random init).

Weights are resolved before open_clip is asked for them, so an offline machine fails within seconds
with a message that says how to pass a local file, instead of a minute of silent retries.

The MLP activation (QuickGELU or GELU) holds no weights, so nothing fails when weights meet the wrong
one: they just compute something else. :func:`resolve_activation` decides it from what is known for
sure (an open_clip tag, OpenAI's TorchScript archive, a ``-quickgelu`` model name, a JSON config) and
refuses to guess for a plain state-dict file.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

from c4c.choices import ACTIVATIONS, QUICKGELU_TAGS
from c4c.errors import C4CError
from c4c.model.towers import context_length, embed_dim

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
BUILTIN = {"tiny": CONFIG_DIR / "clip-tiny.json"}
# Tags trained with QuickGELU (OpenAI CLIP and the LAION-400M/MetaCLIP runs of the OpenAI architecture).


@dataclass
class BackboneInfo:
    """What was built, for the run's resolved config."""

    name: str
    pretrained: str
    image_size: int
    embed_dim: int
    context_length: int
    parameters: int
    quick_gelu: bool = False      # CLIP's activation (OpenAI weights use QuickGELU; it holds no weights)
    activation: str = "gelu"      # the same as a name: "quickgelu" | "gelu"


def _load_json_config(path: Path) -> dict:
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise C4CError(f"cannot read the model config: {exc}", path=path) from None
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in cfg]
    if missing:
        raise C4CError(f"model config lacks {', '.join(missing)}", path=path)
    return cfg


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when the Hugging Face hub answers a TCP connection within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _resolve_tag(model_name: str, tag: str) -> str | None:
    """A local file for ``tag`` if it is already in the Hugging Face cache; None when it must be downloaded."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not cfg:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise C4CError(f"{tag!r} is not a pretrained tag of {model_name} (known tags: {known})",
                       hint="or pass a local weights file with --pretrained PATH")
    hub = cfg.get("hf_hub", "").strip("/")
    if hub:
        from huggingface_hub import hf_hub_download

        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            try:
                return hf_hub_download(hub, filename, local_files_only=True)
            except Exception:  # not cached
                continue
    return None


def is_torchscript_archive(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``; OpenAI's released CLIP files are
    these): a zip whose top folder holds ``code/`` or ``constants.pkl``. A ``torch.save`` state dict
    has neither. Only the zip directory is read; nothing is unpickled."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                parts = name.split("/")
                if len(parts) >= 2 and (parts[1] == "code" or parts[1:] == ["constants.pkl"]):
                    return True
    except (OSError, zipfile.BadZipFile):
        return False
    return False


def _config_quick_gelu(clip: str) -> bool:
    """What the model config itself says (open_clip name, ``tiny`` or a JSON file)."""
    if clip in BUILTIN or clip.endswith(".json"):
        return bool(_load_json_config(BUILTIN.get(clip, Path(clip))).get("quick_gelu", False))
    import open_clip

    return bool((open_clip.get_model_config(clip) or {}).get("quick_gelu", False))


def weights_source(clip: str, tag: str) -> str:
    """Where open_clip would fetch the weights ``clip`` / ``tag`` from: a full URL or a Hub repository."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(clip, tag) or {}
    if cfg.get("url"):
        return str(cfg["url"])
    if cfg.get("hf_hub"):
        return f"the files of https://huggingface.co/{str(cfg['hf_hub']).rstrip('/')}"
    return f"the {tag!r} weights of {clip}"


def resolve_activation(clip: str, pretrained: str, activation: str = "auto") -> tuple[str, str]:
    """``("quickgelu" | "gelu", why)``: the activation :func:`build_clip` gives ``clip`` with ``pretrained``.

    ``activation`` ``"quickgelu"``/``"gelu"`` is used as given (a ``-quickgelu`` model name with
    ``"gelu"`` is an error; contradicting a tag or a TorchScript archive only warns). ``"auto"``:
    a built-in/JSON config keeps its own ``quick_gelu``; a ``-quickgelu`` open_clip name gives QuickGELU;
    a tag in :data:`QUICKGELU_TAGS` or an OpenAI TorchScript archive gives QuickGELU; other tags and
    random init keep the model config's activation; a plain state-dict file (``.pt``, ``.bin``,
    ``.safetensors``, ...) does not say, so it is a C4CError asking for ``--activation``.
    """
    if activation not in ACTIVATIONS:
        raise C4CError(f"unknown activation {activation!r}", hint=f"choose one of: {', '.join(ACTIVATIONS)}")
    pre = str(pretrained).strip()
    is_config = clip in BUILTIN or clip.endswith(".json")
    named_quick = not is_config and clip.lower().endswith("-quickgelu")
    is_file = pre.lower() not in ("none", "") and Path(pre).is_file()
    known = None  # what the weights are known to need
    if pre.lower().replace("-", "_") in QUICKGELU_TAGS:
        known = ("quickgelu", f"pretrained tag {pre!r}")
    elif is_file and is_torchscript_archive(pre):
        known = ("quickgelu", "an OpenAI TorchScript archive")
    if activation != "auto":
        if named_quick and activation == "gelu":
            raise C4CError(f"{clip} is a QuickGELU model name, but the activation asked for is gelu",
                           hint=f"use {clip[:-len('-quickgelu')]} with --activation gelu, or drop --activation")
        if known is not None and known[0] != activation:
            log.warning("CLIP activation %s as asked, although the weights are %s (%s)", activation, known[0], known[1])
        return activation, "asked for"
    if is_config:
        return ("quickgelu" if _config_quick_gelu(clip) else "gelu"), f"the model config {clip}"
    if named_quick:
        return "quickgelu", "the -quickgelu model name"
    if known is not None:
        return known
    if is_file:
        raise C4CError("cannot tell whether these weights were trained with QuickGELU or GELU: a plain state "
                       "dict does not record it, and the wrong one loads without an error", path=pre,
                       hint="pass --activation quickgelu|gelu (quickgelu for OpenAI and LAION-400M weights, "
                            "gelu for most other open_clip weights)")
    return ("quickgelu" if _config_quick_gelu(clip) else "gelu"), f"the model config {clip}"


def check_tokenizer(clip: str, cfg: dict) -> None:
    """C4CError unless the model reads CLIP's BPE tokens, the tokenizer c4c encodes captions with (a model
    whose config names a Hugging Face tokenizer or text model, as SigLIP's do, reads other ids)."""
    text = cfg.get("text_cfg") or {}
    other = text.get("hf_tokenizer_name") or text.get("hf_model_name")
    if other:
        raise C4CError(f"{clip} reads captions with the Hugging Face tokenizer {other}; c4c encodes captions with "
                       "CLIP's BPE tokenizer, whose ids would mean other words to this model",
                       hint="use a model with CLIP's tokenizer (OpenAI ViTs, EVA02, PE-Core, MobileCLIP2, "
                            "ConvNeXt, ResNets); Hugging Face tokenizers are not supported yet")


def check_clip(clip: str, pretrained: str, activation: str = "auto") -> int:
    """What :func:`build_clip` would need, resolved without building (offline too): the model config,
    the weights (a file, or a tag already cached or reachable) and the activation. Returns the model's
    image size; a C4CError says what is missing. A missing weights file fails before open_clip is imported."""
    pre = str(pretrained).strip()
    if pre.lower() not in ("none", "") and ("/" in pre or os.sep in pre or Path(pre).suffix in WEIGHT_SUFFIXES) \
            and not Path(pre).is_file():
        raise C4CError("weights file not found", path=pre,
                       hint="pass an existing weights file, an open_clip tag, or --pretrained none")
    if clip in BUILTIN or clip.endswith(".json"):
        cfg = _load_json_config(BUILTIN.get(clip, Path(clip)))
        check_tokenizer(clip, cfg)
    else:
        import open_clip

        if clip not in open_clip.list_models():
            raise C4CError(f"unknown CLIP model {clip!r}", hint="use an open_clip model name such as ViT-B-32, "
                           "ViT-B-16, 'tiny', or a path to a JSON model config")
        cfg = open_clip.get_model_config(clip) or {}
        check_tokenizer(clip, cfg)
        if pre.lower() not in ("none", "") and not Path(pre).exists() and _resolve_tag(clip, pre) is None \
                and not hub_reachable():
            raise C4CError(
                f"the weights for {clip} / {pre!r} are not in the local cache and the model hub cannot be "
                "reached", hint=f"download {weights_source(clip, pre)} on a machine with internet and pass "
                "--pretrained PATH (with --activation for a plain state dict), or --pretrained none for random init")
    resolve_activation(clip, pre, activation)
    size = (cfg.get("vision_cfg") or {}).get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def build_clip(clip: str = "ViT-B-32", pretrained: str = "openai", *, device: str = "cpu", fp16_weights: bool = False,
               activation: str = "auto"):
    """Return ``(open_clip CLIP model in train mode, BackboneInfo)``.

    ``clip``: an open_clip model name (``-quickgelu`` names included), ``tiny``, or a path to an
    open_clip JSON model config.
    ``pretrained``: ``none``, an open_clip tag (``openai``, ``laion2b_s34b_b79k``, ...) or a weights file
    (open_clip/our safetensors or .pt state dict, or OpenAI's TorchScript ``ViT-B-32.pt``).
    ``fp16_weights``: store Linear/Conv/attention/projection weights in fp16 and run LayerNorms in fp32,
    exactly what the reference code does to CLIP (spec 4.2); training then updates fp16 weights.
    ``activation``: ``auto``, ``quickgelu`` or ``gelu``, resolved by :func:`resolve_activation`
    (``auto`` with a plain state-dict file and an open_clip name is an error that asks for it).
    """
    import torch
    import open_clip

    pre = pretrained.strip()
    act, why = resolve_activation(clip, pre, activation)
    quick_gelu = act == "quickgelu"
    if clip in BUILTIN or clip.endswith(".json"):
        path = BUILTIN.get(clip, Path(clip))
        cfg = {**_load_json_config(path), "quick_gelu": quick_gelu}
        check_tokenizer(clip, cfg)
        kind = open_clip.CustomTextCLIP if cfg.pop("custom_text", False) else open_clip.CLIP
        model = kind(**cfg, cast_dtype=torch.float16 if fp16_weights else None)
        name = clip
        if pre.lower() not in ("none", ""):
            _load_weights_file(model, pre)
    else:
        if clip not in open_clip.list_models():
            raise C4CError(f"unknown CLIP model {clip!r}", hint="use an open_clip model name such as ViT-B-32, "
                           "ViT-B-16, 'tiny', or a path to a JSON model config")
        check_tokenizer(clip, open_clip.get_model_config(clip) or {})
        name = clip
        precision = "fp16" if fp16_weights else "fp32"
        if pre.lower() in ("none", ""):
            model = open_clip.create_model(clip, pretrained=None, force_quick_gelu=quick_gelu, precision=precision)
        elif Path(pre).exists():
            # open_clip loads a path into the model config's blocks without a word: the activation is ours
            model = open_clip.create_model(clip, pretrained=None, force_quick_gelu=quick_gelu, precision=precision)
            _load_weights_file(model, pre)
        else:
            local = _resolve_tag(clip, pre)
            if local is None and not hub_reachable():
                raise C4CError(
                    f"the weights for {clip} / {pre!r} are not in the local cache and the model hub cannot be "
                    "reached", hint=f"download {weights_source(clip, pre)} on a machine with internet and pass "
                    "--pretrained PATH (with --activation for a plain state dict), or --pretrained none for random init")
            model = open_clip.create_model(clip, pretrained=local or pre, force_quick_gelu=quick_gelu,
                                           precision=precision)
        set_activation(model, quick_gelu)  # force_quick_gelu can only add QuickGELU, never take it away
    log.debug("CLIP %s: activation %s (%s)", name, act, why)
    if fp16_weights:
        from open_clip.model import convert_weights_to_lp

        convert_weights_to_lp(model, dtype=torch.float16)  # idempotent; covers the JSON-config path
    model = model.to(device)
    model.train()
    visual = model.visual
    image_size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else int(visual.image_size)
    quick = uses_quick_gelu(model)
    info = BackboneInfo(name=name, pretrained=pre, image_size=int(image_size),
                        embed_dim=embed_dim(model), context_length=context_length(model),
                        parameters=sum(p.numel() for p in model.parameters()),
                        quick_gelu=quick, activation="quickgelu" if quick else "gelu")
    return model, info


def _open_clip_blocks(clip) -> list:
    """open_clip's own transformer blocks in the CLIP (none in a timm image tower or a Hugging Face text
    tower, whose activations their own configs fix)."""
    from open_clip.transformer import ResidualAttentionBlock

    return [m for m in clip.modules() if isinstance(m, ResidualAttentionBlock) and hasattr(m.mlp, "gelu")]


def uses_quick_gelu(clip) -> bool:
    """Whether the CLIP model's blocks use QuickGELU."""
    from open_clip.transformer import QuickGELU

    blocks = _open_clip_blocks(clip)
    return bool(blocks) and isinstance(blocks[0].mlp.gelu, QuickGELU)


def set_activation(clip, quick_gelu: bool) -> None:
    """Use QuickGELU (OpenAI weights) or GELU in every open_clip block of the CLIP. Activations hold no
    weights, so a model rebuilt from a checkpoint without its pretrained tag must have them set explicitly."""
    from open_clip.transformer import QuickGELU
    from torch import nn

    for block in _open_clip_blocks(clip):
        if isinstance(block.mlp.gelu, QuickGELU) != quick_gelu:
            block.mlp.gelu = QuickGELU() if quick_gelu else nn.GELU()


def _load_weights_file(model, path: str) -> None:
    """Load a state dict from ``path`` into ``model`` (strict); never unpickles arbitrary objects."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise C4CError("weights file not found", path=p)
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            if is_torchscript_archive(p):
                import warnings

                with warnings.catch_warnings():  # torch >= 2.9 calls TorchScript deprecated; the files stay
                    warnings.simplefilter("ignore", FutureWarning)
                    state = torch.jit.load(str(p), map_location="cpu").state_dict()  # OpenAI's archive format
            else:
                state = torch.load(p, map_location="cpu", weights_only=True)
    except C4CError:
        raise
    except Exception as exc:
        raise C4CError(f"cannot read weights: {type(exc).__name__}: {exc}", path=p) from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    for key in ("input_resolution", "context_length", "vocab_size", "attn_mask"):  # not weights
        state.pop(key, None)
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k != "attn_mask"]
    if missing or result.unexpected_keys:
        raise C4CError(f"weights do not fit this model: {len(missing)} missing keys (e.g. {missing[:3]}), "
                       f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})", path=p,
                       hint="check --clip matches the checkpoint's architecture")
