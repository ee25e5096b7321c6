"""load_clip: state dicts, JIT archives, clip's download cache, the toy CLIP, and its error messages;
the backbone name checked against the weights file, and backbone_identity."""
import argparse
import hashlib
import json
import os
import pickle
import shutil
import warnings
import zipfile

import pytest
import torch

from helpers.clip_weights import save_jit_archive, save_state_dict, tiny_clip
from mutual_prompt.clip import backbone_identity, load_clip, loader, openai, weights_cache
from mutual_prompt.clip.architecture import (OPENAI_ARCHITECTURES, Architecture, architecture_name, architecture_of,
                                             check_name_against_weights)

IMAGE_SIZE = 32
OPENAI_FILE = "ViT-B-16.pt"


@pytest.fixture(autouse=True)
def weights_cache_file(tmp_path, monkeypatch) -> str:
    """Every test starts with no known weights file, in memory or on disk."""
    path = str(tmp_path / "cache" / "weights_files.json")
    monkeypatch.setattr(weights_cache, "CACHE_FILE", path)
    monkeypatch.setattr(weights_cache, "_memory", {})
    return path


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
    return save_jit_archive(model, tmp_path_factory.mktemp("weights") / "tiny_clip_jit.pt", half=False)


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


def test_path_takes_precedence_over_a_named_backbone(vit_b16_shaped_file, monkeypatch):
    monkeypatch.setattr(openai.clip, "_download", lambda *a, **k: pytest.fail("must not download"))
    reference = torch.load(vit_b16_shaped_file, weights_only=True)
    assert_same_weights(load_clip("ViT-B/16", vit_b16_shaped_file), reference)


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


def _jit_load_state_dict(path: str) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(path, map_location="cpu").state_dict()


@pytest.mark.parametrize("backbone", ["vit", "resnet"])
@pytest.mark.parametrize("half", [True, False])
def test_jit_archive_tensors_are_read_without_torchscript_exactly_as_jit_load_gives_them(tmp_path, backbone, half):
    from mutual_prompt.clip.jit_archive import read_jit_state_dict

    model = (tiny_clip() if backbone == "vit"
             else tiny_clip(64, None, (1, 1, 1, 1), vision_width=8, embed_dim=32, seed=1))
    if backbone == "resnet":  # non-trivial BatchNorm buffers
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.num_batches_tracked.fill_(7)
    path = save_jit_archive(model, tmp_path / f"{backbone}.pt", half)
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


# MODEL.BACKBONE.NAME checked against the weights file

# Shapes of OpenAI's released files: the image tower's position table and the two output projections.
KNOWN_SHAPES = {
    "RN50": {"visual.attnpool.positional_embedding": (50, 2048), "text_projection": (512, 1024)},
    "RN101": {"visual.attnpool.positional_embedding": (50, 2048), "text_projection": (512, 512)},
    "RN50x4": {"visual.attnpool.positional_embedding": (82, 2560), "text_projection": (640, 640)},
    "RN50x16": {"visual.attnpool.positional_embedding": (145, 3072), "text_projection": (768, 768)},
    "RN50x64": {"visual.attnpool.positional_embedding": (197, 4096), "text_projection": (1024, 1024)},
    "ViT-B/32": {"visual.positional_embedding": (50, 768), "visual.proj": (768, 512)},
    "ViT-B/16": {"visual.positional_embedding": (197, 768), "visual.proj": (768, 512)},
    "ViT-L/14": {"visual.positional_embedding": (257, 1024), "visual.proj": (1024, 768)},
    "ViT-L/14@336px": {"visual.positional_embedding": (577, 1024), "visual.proj": (1024, 768)},
}


def meta_clip_state_dict(facts: Architecture) -> dict:
    """The state dict (shapes only) of clip's own CLIP built with ``facts``."""
    with torch.device("meta"):
        model = openai.model.CLIP(embed_dim=facts.embed_dim, image_resolution=facts.resolution,
                                  vision_layers=facts.vision_layers, vision_width=facts.vision_width,
                                  vision_patch_size=facts.patch_size, context_length=77, vocab_size=49408,
                                  transformer_width=facts.text_width, transformer_heads=facts.text_width // 64,
                                  transformer_layers=facts.text_layers)
    return model.state_dict()


def test_each_openai_name_has_facts_that_clips_model_code_builds_and_build_model_reads_back():
    assert set(OPENAI_ARCHITECTURES) == set(openai.available_models())
    for name, facts in OPENAI_ARCHITECTURES.items():
        state_dict = meta_clip_state_dict(facts)
        for key, shape in KNOWN_SHAPES[name].items():
            assert tuple(state_dict[key].shape) == shape, (name, key)
        assert architecture_of(state_dict) == facts, name
        assert architecture_name(architecture_of(state_dict), OPENAI_ARCHITECTURES) == name


@pytest.mark.parametrize("name, resolution, patch, holds", [
    ("RN50", 224, 32, "ViT patch 32, 224 px"),  # the image tower
    ("ViT-B/16", 224, 32, "ViT patch 32, 224 px"),  # the patch size
    ("ViT-B/16", 112, 16, "ViT patch 16, 112 px"),  # the input resolution
    ("ViT-B/32", 224, None, "ResNet 224 px"),  # the image tower, the other way
], ids=["tower", "patch", "resolution", "resnet"])
def test_a_file_of_another_backbone_is_refused_before_building(tmp_path, monkeypatch, name, resolution, patch, holds):
    layers = 1 if patch else (1, 1, 1, 1)
    path = save_state_dict(tiny_clip(resolution, patch, layers, vision_width=64 if patch else 8),
                           tmp_path / "other.pt")
    monkeypatch.setattr(loader, "build_clip", lambda *a: pytest.fail("built before the check"))
    with pytest.raises(ValueError) as info:
        load_clip(name, path)
    message = str(info.value)
    assert message.startswith(f"MODEL.BACKBONE.NAME {name} does not match MODEL.BACKBONE.PATH {path}: "
                              f"the file holds {holds}")
    assert f"and {name} is {OPENAI_ARCHITECTURES[name].describe()}" in message
    assert "set MODEL.BACKBONE.NAME '' to take the file's architecture" in message


def test_weights_that_are_exactly_another_openai_backbone_are_refused():
    with pytest.raises(ValueError, match=r"NAME RN50 does not match MODEL.BACKBONE.PATH /w/rn101.pt: the file holds "
                                         r"RN101 \(ResNet 224 px, stages 3-4-23-3.*set MODEL.BACKBONE.NAME RN101"):
        check_name_against_weights("RN50", "/w/rn101.pt", OPENAI_ARCHITECTURES["RN101"], OPENAI_ARCHITECTURES)


def out_lines(capsys) -> list:
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("name", ["ViT-B/16", "RN50"])
def test_another_size_of_the_named_backbone_warns_in_one_line_and_loads(tmp_path, capsys, name):
    model = tiny_clip(224, 16) if name == "ViT-B/16" else tiny_clip(224, None, (1, 1, 1, 1), vision_width=8)
    path = save_state_dict(model, tmp_path / "small.pt")
    assert_same_weights(load_clip(name, path), torch.load(path, weights_only=True))
    warnings_printed = [line for line in out_lines(capsys) if line.startswith("Warning:")]
    expected = "vision layers 1, not 12" if name == "ViT-B/16" else "vision layers (1, 1, 1, 1), not (3, 4, 6, 3)"
    assert len(warnings_printed) == 1
    assert warnings_printed[0].startswith(f"Warning: MODEL.BACKBONE.PATH {path} holds a {name} of other sizes (")
    assert expected in warnings_printed[0]


def test_an_unknown_name_with_a_file_is_refused_listing_the_names(vit_b16_shaped_file):
    with pytest.raises(ValueError) as info:
        load_clip("ViT-B-32", vit_b16_shaped_file)
    message = str(info.value)
    assert f"MODEL.BACKBONE.NAME='ViT-B-32' for MODEL.BACKBONE.PATH {vit_b16_shaped_file}" in message
    assert all(f"'{name}'" in message for name in openai.available_models() + ["toy"])
    assert "open_clip:<model> for open_clip's weights, or '' to take the file's architecture" in message


QUICK_GELU_NOTE = ("is read with OpenAI's CLIP architecture and its QuickGELU activation. Weights trained with "
                   "open_clip's GELU models (its model names without -quickgelu, e.g. the LAION-2B and DataComp "
                   "open_clip_pytorch_model.bin) give different features under it; open_clip's own weights belong "
                   "under MODEL.BACKBONE.NAME open_clip:<model>")


def test_a_state_dict_under_an_openai_name_is_said_to_be_read_with_quick_gelu(vit_b16_shaped_file, capsys):
    load_clip("ViT-B/16", vit_b16_shaped_file)
    notes = [line for line in out_lines(capsys) if line.startswith("Note:")]
    assert notes == [f"Note: {vit_b16_shaped_file} is not one of OpenAI's CLIP files (a state dict, not OpenAI's JIT "
                     f"archive); it {QUICK_GELU_NOTE} (docs/USAGE.md)"]


def test_a_jit_archive_is_said_to_be_read_with_quick_gelu_unless_it_is_one_of_openais_files(jit_file, capsys,
                                                                                          monkeypatch):
    load_clip("", jit_file)
    assert f"Note: {jit_file} is not one of OpenAI's CLIP files (its SHA-256 is none of OpenAI's files)" in \
        capsys.readouterr().out
    with open(jit_file, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    monkeypatch.setattr(openai.clip, "_MODELS", unreachable_models(sha256))
    load_clip("", jit_file)
    assert "Note:" not in capsys.readouterr().out


def test_a_toy_of_other_sizes_loads_without_the_quick_gelu_note(state_dict_file, capsys):
    if not os.path.isfile(loader.TINY_CLIP_PATH):
        pytest.skip(f"{loader.TINY_CLIP_PATH} not generated yet")
    load_clip("toy", state_dict_file)
    lines = out_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"Warning: MODEL.BACKBONE.PATH {state_dict_file} holds a toy")


def test_an_empty_name_takes_the_files_architecture(state_dict_file, capsys):
    described = "ViT patch 8, 32 px, width 64, 1 layers, embed 64, text width 64, 1 layers"
    load_clip("", state_dict_file)
    assert f"MODEL.BACKBONE.NAME is empty: the run takes the architecture of {state_dict_file}: {described}" in \
        out_lines(capsys)
    assert backbone_identity("", state_dict_file)["MODEL.BACKBONE.ARCH"] == described
    if os.path.isfile(loader.TINY_CLIP_PATH):
        assert backbone_identity("", loader.TINY_CLIP_PATH)["MODEL.BACKBONE.ARCH"] == "toy"


def sha256_of(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def reads(monkeypatch) -> dict:
    """How often weights files other than the toy CLIP's were hashed and read (their tensors) since
    the test began."""
    counts = {"sha256": 0, "weights": 0}

    def counted(function, key):
        def wrapper(path):
            counts[key] += path != loader.TINY_CLIP_PATH
            return function(path)
        return wrapper

    monkeypatch.setattr(weights_cache, "sha256_of_file", counted(weights_cache.sha256_of_file, "sha256"))
    monkeypatch.setattr(loader, "read_clip_weights", counted(loader.read_clip_weights, "weights"))
    return counts


def test_backbone_identity_reads_a_file_once_until_it_changes(tmp_path, monkeypatch, reads, weights_cache_file):
    path = save_state_dict(tiny_clip(224, 16), tmp_path / "clip.pt")
    first = backbone_identity("ViT-B/16", path)
    described = "ViT patch 16, 224 px, width 64, 1 layers, embed 64, text width 64, 1 layers"
    assert first == {"MODEL.BACKBONE.ARCH": described, "MODEL.BACKBONE.ACTIVATION": "quick_gelu",
                     "MODEL.BACKBONE.SHA256": sha256_of(path)}
    assert reads == {"sha256": 1, "weights": 1}
    assert backbone_identity("ViT-B/16", path) == first
    monkeypatch.setattr(weights_cache, "_memory", {})  # a later process: only the cache file
    assert backbone_identity("ViT-B/16", path) == first
    assert reads == {"sha256": 1, "weights": 1}

    stat = os.stat(path)
    save_state_dict(tiny_clip(224, 16, seed=1), path)  # other weights, same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = backbone_identity("ViT-B/16", path)
    assert changed["MODEL.BACKBONE.SHA256"] == sha256_of(path) != first["MODEL.BACKBONE.SHA256"]
    assert reads == {"sha256": 2, "weights": 2}
    with open(weights_cache_file) as f:
        assert list(json.load(f)["files"]) == [os.path.abspath(path)]


def test_a_corrupt_weights_cache_file_is_ignored_and_rewritten(tmp_path, monkeypatch, reads, weights_cache_file):
    path = save_state_dict(tiny_clip(224, 16), tmp_path / "clip.pt")
    expected = backbone_identity("", path)
    with open(weights_cache_file, "w") as f:
        f.write('{"files": {"')
    monkeypatch.setattr(weights_cache, "_memory", {})
    assert backbone_identity("", path) == expected
    assert reads == {"sha256": 2, "weights": 2}
    with open(weights_cache_file) as f:
        record = json.load(f)["files"][os.path.abspath(path)]
    assert record["sha256"] == expected["MODEL.BACKBONE.SHA256"]


def test_backbone_identity_of_a_name_reads_and_downloads_nothing_it_does_not_need(tmp_path, monkeypatch, reads):
    monkeypatch.setattr(openai.clip, "_download", lambda *a, **k: pytest.fail("must not download"))
    monkeypatch.setattr(loader, "CLIP_CACHE_DIR", str(tmp_path / "empty_cache"))
    assert backbone_identity("ViT-B/32", "") == {
        "MODEL.BACKBONE.ARCH": "ViT-B/32", "MODEL.BACKBONE.ACTIVATION": "quick_gelu",
        "MODEL.BACKBONE.SHA256": "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"}
    assert reads == {"sha256": 0, "weights": 0}
    if os.path.isfile(loader.TINY_CLIP_PATH):
        toy = backbone_identity("toy", "")
        assert (toy["MODEL.BACKBONE.ARCH"], toy["MODEL.BACKBONE.SHA256"]) == ("toy", sha256_of(loader.TINY_CLIP_PATH))
    with pytest.raises(ValueError, match="Unknown CLIP backbone MODEL.BACKBONE.NAME='ViT-B/17'"):
        backbone_identity("ViT-B/17", "")
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        backbone_identity("ViT-B/16", str(tmp_path / "nowhere.pt"))


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
