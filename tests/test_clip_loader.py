"""load_clip: state dicts, JIT archives, clip's download cache, the toy CLIP, and its error messages."""
import argparse
import hashlib
import os
import pickle
import shutil
import warnings
import zipfile

import pytest
import torch

from mutual_prompt.clip import load_clip, loader, openai

IMAGE_SIZE = 32
OPENAI_FILE = "ViT-B-16.pt"


def tiny_clip() -> openai.model.CLIP:
    torch.manual_seed(0)
    return openai.model.CLIP(embed_dim=64, image_resolution=IMAGE_SIZE, vision_layers=1, vision_width=64,
                           vision_patch_size=16, context_length=77, vocab_size=49408,
                           transformer_width=64, transformer_heads=1, transformer_layers=1).eval()


@pytest.fixture(scope="module")
def reference_fp16() -> dict:
    """The tiny model's weights rounded to fp16, as OpenAI ships them: loading them is exact."""
    return {k: v.half() for k, v in tiny_clip().state_dict().items()}


@pytest.fixture(scope="module")
def state_dict_file(tmp_path_factory, reference_fp16) -> str:
    path = str(tmp_path_factory.mktemp("weights") / "tiny_clip_state_dict.pt")
    torch.save(reference_fp16, path)
    return path


@pytest.fixture(scope="module")
def jit_file(tmp_path_factory, reference_fp16) -> str:
    """A traced archive like OpenAI's files, holding the fp16-rounded weights."""
    model = tiny_clip()
    model.load_state_dict({k: v.float() for k, v in reference_fp16.items()})
    example = (torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE), openai.tokenize(["a photo of a cat."]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about building the fixture
        traced = torch.jit.trace(model, example)
    path = str(tmp_path_factory.mktemp("weights") / "tiny_clip_jit.pt")
    traced.save(path)
    return path


def assert_same_weights(model: openai.model.CLIP, reference: dict) -> None:
    loaded = model.state_dict()
    assert set(loaded) == set(reference)
    for key, value in reference.items():
        assert torch.equal(loaded[key], value.float()), key


def unreachable_models(sha256: str) -> dict:
    """clip's name -> URL table with ViT-B/16 served from a closed local port (the URL carries the checksum)."""
    return dict(openai.clip._MODELS, **{"ViT-B/16": f"http://127.0.0.1:9/{sha256}/{OPENAI_FILE}"})


def test_state_dict_path_loads_fp32_eval_model_with_the_saved_weights(state_dict_file, reference_fp16):
    model = load_clip("", state_dict_file)
    assert isinstance(model, openai.model.CLIP)
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.visual.input_resolution == IMAGE_SIZE
    assert_same_weights(model, reference_fp16)


def test_jit_archive_path_loads_the_same_model_as_the_state_dict(jit_file, state_dict_file, reference_fp16):
    from_jit = load_clip("", jit_file)
    assert isinstance(from_jit, openai.model.CLIP)  # rebuilt as a plain module, not the traced one
    assert_same_weights(from_jit, reference_fp16)
    image = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        assert torch.equal(from_jit.encode_image(image), load_clip("", state_dict_file).encode_image(image))


def test_path_takes_precedence_over_a_named_backbone(state_dict_file, reference_fp16, monkeypatch):
    monkeypatch.setattr(openai.clip, "_download", lambda *a, **k: pytest.fail("must not download"))
    assert_same_weights(load_clip("ViT-B/16", state_dict_file), reference_fp16)


def test_off_the_cpu_the_model_keeps_build_models_fp16_weights(state_dict_file):
    model = load_clip("", state_dict_file, device="meta")
    assert model.visual.conv1.weight.dtype == torch.float16
    assert model.visual.conv1.weight.device.type == "meta"


def test_named_backbone_is_read_from_clips_cache(state_dict_file, reference_fp16, tmp_path, monkeypatch):
    with open(state_dict_file, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    monkeypatch.setattr(openai.clip, "_MODELS", unreachable_models(sha256))
    shutil.copy(state_dict_file, tmp_path / OPENAI_FILE)
    assert_same_weights(load_clip("ViT-B/16", download_root=str(tmp_path)), reference_fp16)


def test_offline_named_backbone_names_the_cache_file_and_the_path_key(tmp_path, monkeypatch):
    monkeypatch.setattr(openai.clip, "_MODELS", unreachable_models("0" * 64))
    monkeypatch.setattr(loader, "CLIP_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as info:  # train.py reports it as a user error
        load_clip("ViT-B/16")
    message = str(info.value)
    assert os.path.join(str(tmp_path / "cache"), OPENAI_FILE) in message
    assert "MODEL.BACKBONE.PATH" in message
    assert "ViT-B/16" in message


def test_missing_path_is_named(tmp_path):
    missing = str(tmp_path / "nowhere" / "clip.pt")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_clip("ViT-B/16", missing)


def test_unreadable_file_is_named(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt.*neither an OpenAI JIT archive nor a state dict"):
        load_clip("", str(junk))


def test_corrupt_jit_archive_is_named(jit_file, tmp_path):
    corrupt = tmp_path / "corrupt_jit.pt"
    with zipfile.ZipFile(jit_file) as source, zipfile.ZipFile(corrupt, "w") as target:
        for name in source.namelist():
            if not name.endswith("data.pkl"):
                target.writestr(name, source.read(name))
    with pytest.raises(ValueError, match="Cannot read the OpenAI JIT archive .*corrupt_jit.pt"):
        load_clip("", str(corrupt))


def test_file_without_a_state_dict_is_named(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="list.pt holds a list, expected a flat state dict"):
        load_clip("", str(path))


def test_state_dict_of_another_model_is_named(tmp_path):
    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(ValueError, match="linear.pt does not hold OpenAI CLIP weights"):
        load_clip("", str(path))


def test_unknown_name_lists_the_available_names():
    with pytest.raises(ValueError) as info:
        load_clip("ViT-B/17")
    message = str(info.value)
    assert "'ViT-B/17'" in message and "'ViT-B/16'" in message and "'RN50'" in message and "'toy'" in message


def test_missing_toy_checkpoint_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "TINY_CLIP_PATH", str(tmp_path / "tiny_clip.pt"))
    with pytest.raises(FileNotFoundError, match="tiny_clip.pt is missing.*mutual_prompt.toy.pretrain"):
        load_clip("toy")


def test_toy_loads_the_shipped_checkpoint_in_fp32_on_any_device():
    if not os.path.isfile(loader.TINY_CLIP_PATH):
        pytest.skip(f"{loader.TINY_CLIP_PATH} not generated yet")
    model = load_clip("toy", device="meta")
    assert isinstance(model.visual, openai.model.VisionTransformer)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    shipped = torch.load(loader.TINY_CLIP_PATH, weights_only=True)
    assert torch.equal(load_clip("toy").visual.conv1.weight, shipped["visual.conv1.weight"].float())


def _traced_archive(model: openai.model.CLIP, image_size: int, path: str, half: bool) -> str:
    example = (torch.zeros(1, 3, image_size, image_size), openai.tokenize(["a photo of a cat."]))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, example)
    if half:
        traced.half()  # OpenAI's files hold fp16 tensors
    traced.save(path)
    return path


def _jit_load_state_dict(path: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(path, map_location="cpu").state_dict()


def tiny_resnet_clip() -> openai.model.CLIP:
    torch.manual_seed(1)
    return openai.model.CLIP(embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8,
                           vision_patch_size=None, context_length=77, vocab_size=49408,
                           transformer_width=64, transformer_heads=1, transformer_layers=1).eval()


@pytest.mark.parametrize("backbone", ["vit", "resnet"])
@pytest.mark.parametrize("half", [True, False])
def test_jit_archive_tensors_are_read_without_torchscript_exactly_as_jit_load_gives_them(tmp_path, backbone, half):
    from mutual_prompt.clip.jit_archive import read_jit_state_dict

    model, size = (tiny_clip(), IMAGE_SIZE) if backbone == "vit" else (tiny_resnet_clip(), 64)
    if backbone == "resnet":  # non-trivial BatchNorm buffers
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.num_batches_tracked.fill_(7)
    path = _traced_archive(model, size, str(tmp_path / f"{backbone}.pt"), half)
    expected = _jit_load_state_dict(path)
    read = read_jit_state_dict(path)
    assert list(read) == list(expected)
    for key, value in expected.items():
        assert read[key].dtype == value.dtype and read[key].shape == value.shape, key
        assert torch.equal(read[key], value), key
    names = {"logit_scale", "token_embedding.weight", "transformer.resblocks.0.attn.in_proj_weight", "ln_final.bias"}
    names |= ({"visual.conv1.weight", "visual.class_embedding", "visual.transformer.resblocks.0.ln_1.weight"}
              if backbone == "vit" else {"visual.bn1.running_var", "visual.layer1.0.bn1.num_batches_tracked",
                                         "visual.attnpool.positional_embedding"})
    assert names <= set(read)  # OpenAI's key names, as clip.model.build_model reads them
    assert isinstance(load_clip("", path), openai.model.CLIP)


def test_loading_a_jit_archive_never_runs_torchscript(jit_file, reference_fp16, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    assert_same_weights(load_clip("", jit_file), reference_fp16)


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (shutil.copyfile, (__file__, self.marker))


def test_a_jit_archive_whose_pickle_calls_a_function_is_refused_unrun(jit_file, tmp_path):
    import pickle

    marker = tmp_path / "ran"
    evil = tmp_path / "evil_jit.pt"
    with zipfile.ZipFile(jit_file) as source, zipfile.ZipFile(evil, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith("/data.pkl"):
                data = pickle.dumps(_RunsCode(str(marker)), protocol=2)
            target.writestr(name, data)
    with pytest.raises(ValueError, match=r"Cannot read the OpenAI JIT archive .*evil_jit.pt.*shutil.copyfile.*refusing"):
        load_clip("", str(evil))
    assert not marker.exists()


@pytest.mark.parametrize("content, reason", [
    pytest.param({"weights": torch.zeros(2), "optimizer": argparse.Namespace(lr=0.1)},
                 "Unsupported global: GLOBAL argparse.Namespace", id="torch.save of objects"),
    pytest.param(None, "Python objects that torch.load(weights_only=True) does not read (Unsupported operand 149)",
                 id="plain pickle"),
])
def test_a_file_of_python_objects_is_named_without_torch_s_advice_to_unpickle_it(tmp_path, content, reason):
    path = tmp_path / "objects.pt"
    if content is None:
        with open(path, "wb") as f:
            pickle.dump({"model": argparse.Namespace}, f)
    else:
        torch.save(content, path)
    with pytest.raises(ValueError) as info:
        load_clip("", str(path))
    assert str(info.value) == (f"Cannot read CLIP weights from {path} (MODEL.BACKBONE.PATH): it is neither an OpenAI "
                               f"JIT archive nor a state dict of tensors saved with torch.save ({reason})")
