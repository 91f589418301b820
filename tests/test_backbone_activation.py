"""CLIP's activation is decided by what the weights are known to be, not by the file's name: OpenAI's
TorchScript archive is QuickGELU under any name; a plain state dict does not say, so `auto` refuses."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from c4c.errors import C4CError
from c4c.model.backbone import CONFIG_DIR, build_clip, is_torchscript_archive, resolve_activation, uses_quick_gelu
from c4c.run.folder import run_quick_gelu

GELU_NAME = "C4cTinyTest"               # the tiny config registered in open_clip under a model name
QUICK_NAME = "C4cTinyTest-quickgelu"    # ... and as a -quickgelu name


@pytest.fixture(scope="module")
def named_tiny(tmp_path_factory):
    """Register the tiny config as open_clip model names (GELU, and -quickgelu), as ViT-B-32 is."""
    import open_clip

    folder = tmp_path_factory.mktemp("configs")
    cfg = json.loads((CONFIG_DIR / "clip-tiny.json").read_text())
    cfg.pop("quick_gelu")
    (folder / f"{GELU_NAME}.json").write_text(json.dumps(cfg))
    (folder / f"{QUICK_NAME}.json").write_text(json.dumps({**cfg, "quick_gelu": True}))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model, _ = build_clip(GELU_NAME, "none")
    return model.eval()


@pytest.fixture(scope="module")
def weight_files(named_tiny, tmp_path_factory):
    """The same weights as a TorchScript archive and as plain state dicts, under several names."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("weights")
    size = named_tiny.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(named_tiny, (torch.zeros(1, 3, size, size),
                                              torch.zeros(1, named_tiny.context_length, dtype=torch.long)),
                                 check_trace=False, strict=False)
    files = {}
    for name in ("openai_clip_b32.pt", "ViT-B-32.bin", "ViT-B-32.pt", "weights"):
        files[("torchscript", name)] = folder / "ts" / name
        files[("torchscript", name)].parent.mkdir(exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.jit.save(traced, str(files[("torchscript", name)]))
        files[("state", name)] = folder / "sd" / name
        files[("state", name)].parent.mkdir(exist_ok=True)
        torch.save(named_tiny.state_dict(), files[("state", name)])
    files[("state", "w.safetensors")] = folder / "sd" / "w.safetensors"
    save_file({k: v.contiguous() for k, v in named_tiny.state_dict().items()}, str(files[("state", "w.safetensors")]))
    return files


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", ["openai_clip_b32.pt", "ViT-B-32.bin", "ViT-B-32.pt", "weights"])
def test_a_torchscript_archive_gets_quickgelu_under_any_name(named_tiny, weight_files, name):
    path = weight_files[("torchscript", name)]
    assert is_torchscript_archive(path)
    clip, info = build_clip(GELU_NAME, str(path))
    assert uses_quick_gelu(clip) and info.quick_gelu and info.activation == "quickgelu"
    assert _same_weights(clip, named_tiny)


@pytest.mark.parametrize("name", ["openai_clip_b32.pt", "ViT-B-32.bin", "ViT-B-32.pt", "weights", "w.safetensors"])
def test_a_plain_state_dict_with_auto_asks_for_the_activation(weight_files, name):
    path = weight_files[("state", name)]
    assert not is_torchscript_archive(path)
    with pytest.raises(C4CError, match=rf"{name}: cannot tell .* QuickGELU or GELU.*--activation quickgelu\|gelu"):
        build_clip(GELU_NAME, str(path))


@pytest.mark.parametrize("activation", ["quickgelu", "gelu"])
def test_a_plain_state_dict_loads_with_the_activation_asked_for(named_tiny, weight_files, activation):
    clip, info = build_clip(GELU_NAME, str(weight_files[("state", "ViT-B-32.pt")]), activation=activation)
    assert info.activation == activation and uses_quick_gelu(clip) == (activation == "quickgelu")
    assert info.quick_gelu == (activation == "quickgelu")
    assert _same_weights(clip, named_tiny)


def test_an_explicit_activation_overrides_a_torchscript_archive(weight_files):
    clip, info = build_clip(GELU_NAME, str(weight_files[("torchscript", "weights")]), activation="gelu")
    assert not uses_quick_gelu(clip) and info.activation == "gelu"


def test_a_quickgelu_model_name_is_honoured(named_tiny, weight_files):
    path = str(weight_files[("state", "ViT-B-32.bin")])
    clip, info = build_clip(QUICK_NAME, path)
    assert uses_quick_gelu(clip) and info.activation == "quickgelu"
    assert uses_quick_gelu(build_clip(QUICK_NAME, "none")[0])
    with pytest.raises(C4CError, match="QuickGELU model name"):
        build_clip(QUICK_NAME, path, activation="gelu")


def test_random_init_keeps_the_model_configs_activation_unless_asked(named_tiny):
    assert not uses_quick_gelu(build_clip(GELU_NAME, "none")[0])
    assert uses_quick_gelu(build_clip(GELU_NAME, "none", activation="quickgelu")[0])


def test_builtin_config_keeps_its_own_activation_with_any_weights(tmp_path, named_tiny):
    clip, info = build_clip("tiny", "none")  # clip-tiny.json says quick_gelu: true
    assert uses_quick_gelu(clip) and info.activation == "quickgelu"
    torch.save(clip.state_dict(), tmp_path / "plain.bin")
    assert build_clip("tiny", str(tmp_path / "plain.bin"))[1].activation == "quickgelu"
    clip, info = build_clip("tiny", str(tmp_path / "plain.bin"), activation="gelu")
    assert not uses_quick_gelu(clip) and info.activation == "gelu"


@pytest.mark.parametrize(("tag", "expected"), [("openai", "quickgelu"), ("laion400m_e32", "quickgelu"),
                                               ("laion2b_s34b_b79k", "gelu")])
def test_open_clip_tags_resolve_without_loading_anything(tag, expected):
    assert resolve_activation("ViT-B-32", tag)[0] == expected


def test_an_unknown_activation_is_a_user_error():
    with pytest.raises(C4CError, match="unknown activation 'relu'.*auto, quickgelu, gelu"):
        build_clip("tiny", "none", activation="relu")


def test_a_zip_that_is_not_torchscript_and_a_missing_file_are_not_archives(tmp_path, weight_files):
    import zipfile

    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("x/data.pkl", b"")
    assert not is_torchscript_archive(tmp_path / "other.zip")
    assert not is_torchscript_archive(tmp_path / "missing.pt")


def test_old_run_configs_still_give_their_activation():
    assert run_quick_gelu({"backbone": {"quick_gelu": True}}) is True
    assert run_quick_gelu({"backbone": {"activation": "gelu"}}) is False
    assert run_quick_gelu({"pretrained": "/models/ViT-B-32.pt"}) is True   # the name rule those runs used
    assert run_quick_gelu({"pretrained": "openai"}) is True


def test_the_offline_weights_error_gives_a_url_that_can_be_copied(monkeypatch):
    from c4c.model import backbone

    monkeypatch.setattr(backbone, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(backbone, "_resolve_tag", lambda model, tag: None)
    with pytest.raises(C4CError) as info:
        backbone.build_clip("ViT-B-32", "openai")
    text = str(info.value)
    assert "https://openaipublic.azureedge.net/clip/models/" in text and "/.../" not in text
    assert text.split("https://")[1].split()[0].endswith("ViT-B-32.pt")
