"""open_clip backbones (MODEL.BACKBONE.NAME open_clip:<model>): features and logits equal open_clip's own
forward, for both activations and for image towers that are not a ViT; every PREC; the config features,
tokenizers, tags and names that are refused; the backbone identity; and train.py end to end (train,
eval-only, eval refused on other weights). Random weights from small configs registered with open_clip
(tests/helpers/open_clip_weights.py); nothing is downloaded."""
import os
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

open_clip = pytest.importorskip("open_clip")

import train  # noqa: E402
from helpers.method_arguments import arguments  # noqa: E402
from helpers.open_clip_weights import (  # noqa: E402
    random_model,
    register,
    save_bin,
    save_safetensors,
    train_py,
)
from helpers.runs import REPO_ROOT, python  # noqa: E402
from mutual_prompt.backend import build_trainer  # noqa: E402
from mutual_prompt.clip import (  # noqa: E402
    PromptImageEncoder,
    PromptTextEncoder,
    autocast,
    backbone_identity,
    load_clip,
    load_frozen_clip,
    tokenize,
)
from mutual_prompt.clip import open_clip_backbone  # noqa: E402
from mutual_prompt.clip.open_clip_backbone import OpenClipName, OpenClipTowerCLIP  # noqa: E402
from mutual_prompt.clip.openai.model import CLIP, QuickGELU  # noqa: E402
from mutual_prompt.clip.precision import CPU_FP16_SWITCH  # noqa: E402
from mutual_prompt.clip.weights_cache import sha256_of_file  # noqa: E402
from mutual_prompt.method import MutualPromptCLIP  # noqa: E402
from mutual_prompt.run.config_checks import ConfigError  # noqa: E402

CLASSNAMES = ["face", "red panda", "accordion", "dollar bill"]
HAND_PROMPT = "a photo of a"  # the zero-shot reduction: this context and "{class name}."
TOLERANCE = 1e-5
SIZES = {"mp-test-vit": 32, "mp-test-vit-quickgelu": 32, "mp-test-vit-custom-text": 32, "mp-test-rn": 64,
         "mp-test-convnext": 32}
CONFIGS = os.path.join(REPO_ROOT, "configs")


@pytest.fixture(scope="module", autouse=True)
def registered(tmp_path_factory) -> str:
    """The test configs, known to open_clip in this process; their folder, for train.py's."""
    folder = str(tmp_path_factory.mktemp("open_clip_configs"))
    register(folder)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory, registered):
    """name -> (open_clip's model, its .bin file, its .safetensors file)."""
    folder = tmp_path_factory.mktemp("open_clip_weights")
    out = {}
    for name in SIZES:
        model = random_model(name)
        out[name] = (model, save_bin(model, folder / f"{name}.bin"), save_safetensors(model, folder / f"{name}.safetensors"))
    return out


def images(name: str, count: int = 3) -> torch.Tensor:
    size = SIZES[name]
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(1))


def hand_prompt_features(clip_model) -> torch.Tensor:
    """PromptTextEncoder's class features with the hand prompt's word embeddings as the context."""
    encoder = PromptTextEncoder(clip_model, len(HAND_PROMPT.split()))
    encoder.set_classnames(CLASSNAMES)
    ctx = clip_model.token_embedding(tokenize(HAND_PROMPT))[0, 1:1 + encoder.n_ctx]
    return encoder(ctx)


def open_clip_text_features(model, name: str) -> torch.Tensor:
    tokenizer = open_clip.get_tokenizer(name)
    return model.encode_text(tokenizer([f"{HAND_PROMPT} {c}." for c in CLASSNAMES]))


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


# 1. Exactness against open_clip's own forward, fp32

@pytest.mark.parametrize("name", list(SIZES))
@pytest.mark.parametrize("file_format", ["bin", "safetensors"])
@torch.no_grad()
def test_image_and_hand_prompt_text_features_equal_open_clips(weights, name, file_format):
    model, bin_file, safetensors_file = weights[name]
    ours = load_clip(f"open_clip:{name}", bin_file if file_format == "bin" else safetensors_file)
    x = images(name)
    expected_image = model.encode_image(x)
    assert max_difference(ours.encode_image(x), expected_image) < TOLERANCE
    if name.startswith("mp-test-vit"):  # TVP's encoder, without prompts, is encode_image
        assert max_difference(PromptImageEncoder(ours.visual)(x), expected_image) < TOLERANCE
    expected_text = open_clip_text_features(model, name)
    assert expected_text.abs().max() > 0.1  # features of a size where 1e-5 means something
    assert max_difference(hand_prompt_features(ours), expected_text) < TOLERANCE
    assert max_difference(ours.encode_text(tokenize([f"{HAND_PROMPT} {c}." for c in CLASSNAMES])), expected_text) < TOLERANCE


@pytest.mark.parametrize("name", list(SIZES))
@torch.no_grad()
def test_zero_shot_logits_equal_open_clips(weights, name):
    model, bin_file, _ = weights[name]
    ours = load_clip(f"open_clip:{name}", bin_file)
    x = images(name)
    expected, _ = model.get_logits(x, open_clip.get_tokenizer(name)([f"{HAND_PROMPT} {c}." for c in CLASSNAMES]))
    image = F.normalize(ours.encode_image(x), dim=-1)
    text = F.normalize(hand_prompt_features(ours), dim=-1)
    assert max_difference(ours.logit_scale.exp() * image @ text.t(), expected) < TOLERANCE


@pytest.mark.parametrize("name", ["mp-test-vit", "mp-test-convnext"])
@torch.no_grad()
def test_untrained_coop_from_the_hand_prompt_is_open_clips_zero_shot(weights, name):
    """METHOD.md's third exact reduction, on an open_clip backbone: FTP none, TVP off, context "a photo of a"."""
    model, bin_file, _ = weights[name]
    method = MutualPromptCLIP(load_clip(f"open_clip:{name}", bin_file), CLASSNAMES,
                              **arguments(ctx_init=HAND_PROMPT, ftp_mode="none", tvp_enabled=False))
    x = images(name)
    expected, _ = model.get_logits(x, open_clip.get_tokenizer(name)([f"{HAND_PROMPT} {c}." for c in CLASSNAMES]))
    assert max_difference(method(x), expected) < TOLERANCE


@torch.no_grad()
def test_the_activation_is_the_configs_and_the_other_one_would_differ(weights):
    gelu = load_clip("open_clip:mp-test-vit", weights["mp-test-vit"][1])
    quick = load_clip("open_clip:mp-test-vit-quickgelu", weights["mp-test-vit-quickgelu"][1])
    for model, activation in ((gelu, torch.nn.GELU), (quick, QuickGELU)):
        blocks = list(model.transformer.resblocks) + list(model.visual.transformer.resblocks)
        assert all(type(block.mlp.gelu) is activation for block in blocks)
    # the same weights under the other activation give other features: the choice is tested above
    wrong = load_clip("open_clip:mp-test-vit-quickgelu", weights["mp-test-vit"][1])
    x = images("mp-test-vit")
    assert max_difference(wrong.encode_image(x), weights["mp-test-vit"][0].encode_image(x)) > 1e-3


@torch.no_grad()
def test_a_real_config_vit_b16_is_exact():
    model = random_model("ViT-B-16", perturb=0.0)
    ours = open_clip_backbone.build_open_clip(OpenClipName("ViT-B-16"), model.state_dict(), "memory")
    assert type(ours) is CLIP
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    assert max_difference(ours.encode_image(x), model.encode_image(x)) < TOLERANCE
    assert max_difference(hand_prompt_features(ours), open_clip_text_features(model, "ViT-B-16")) < TOLERANCE


# 2. Precisions

@pytest.mark.parametrize("name", ["mp-test-vit", "mp-test-convnext", "mp-test-rn"])
@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32", "amp"])
@torch.no_grad()
def test_every_precision_runs_and_stays_near_fp32(weights, monkeypatch, name, precision):
    monkeypatch.setenv(CPU_FP16_SWITCH, "1")
    model, bin_file, _ = weights[name]
    clip_model = load_frozen_clip(f"open_clip:{name}", bin_file, "cpu", precision, (SIZES[name], SIZES[name]))
    assert not any(p.requires_grad for p in clip_model.parameters())
    x = images(name)
    with autocast(precision, "cpu"):
        image, text = clip_model.encode_image(x), hand_prompt_features(clip_model)
    expected_image, expected_text = model.encode_image(x), open_clip_text_features(model, name)
    if precision == "fp32":
        assert max_difference(image, expected_image) < TOLERANCE and max_difference(text, expected_text) < TOLERANCE
    else:
        similarity = F.cosine_similarity(image.float(), expected_image, dim=-1)
        assert similarity.min() > 0.99 and F.cosine_similarity(text.float(), expected_text, dim=-1).min() > 0.99


# 3. What is refused, and how

def test_config_features_not_built_here_are_refused_naming_them(weights, tmp_path):
    with pytest.raises(ValueError, match=r"open_clip:mp-test-layer-scale is not supported: .*layer scale "
                                         r"\(vision_cfg.ls_init_value 1e-05\)"):
        load_clip("open_clip:mp-test-layer-scale", weights["mp-test-vit"][1])
    with pytest.raises(ValueError) as info:
        backbone_identity("open_clip:ViT-B-16-SigLIP", "")
    message = str(info.value)
    for feature in ("a logit bias (SigLIP) (init_logit_bias)", "a Hugging Face tokenizer",
                    "a text tower without the causal mask"):
        assert feature in message
    with pytest.raises(ValueError, match=r"CoCa's text decoder \(multimodal_cfg\)"):
        load_clip("open_clip:coca_ViT-B-32", weights["mp-test-vit"][1])


def test_a_tokenizer_other_than_openais_is_refused(monkeypatch):
    monkeypatch.setattr(open_clip, "get_tokenizer", lambda name: open_clip.SimpleTokenizer(context_length=64))
    with pytest.raises(ValueError, match=r"open_clip:mp-test-layer-scale is not supported: its tokenizer "
                                         r"\(SimpleTokenizer, context length 64\) is not OpenAI's BPE with a 77-token "
                                         r"context"):
        open_clip_backbone.check_tokenizer(OpenClipName("mp-test-layer-scale"))  # never checked before


def test_an_unknown_model_gets_the_closest_names():
    with pytest.raises(ValueError, match=r"Unknown open_clip model 'ViT-B-61' \(MODEL.BACKBONE.NAME "
                                         r"open_clip:ViT-B-61\): did you mean open_clip:ViT-B-16"):
        load_clip("open_clip:ViT-B-61", "/nowhere.bin")


def test_weights_of_another_model_are_refused_naming_the_file(weights):
    file = weights["mp-test-rn"][1]
    with pytest.raises(ValueError, match=rf"^{re.escape(file)} does not hold the weights of open_clip:mp-test-vit "
                                         r"\(MODEL.BACKBONE.PATH\): \d+ missing keys \(first: visual.class_embedding, "):
        load_clip("open_clip:mp-test-vit", file)


def test_no_file_and_no_tag_says_how_to_give_the_weights():
    with pytest.raises(ValueError, match=r"MODEL.BACKBONE.NAME open_clip:ViT-B-16 needs its weights: set "
                                         r"MODEL.BACKBONE.PATH .* or name a pretrained tag, open_clip:ViT-B-16/<tag>"):
        load_clip("open_clip:ViT-B-16", "")


def test_a_tag_not_in_the_cache_offline_names_the_way_out(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    with pytest.raises(FileNotFoundError) as info:
        load_clip("open_clip:ViT-B-16/laion2b_s34b_b88k", "", download_root=str(tmp_path))
    message = str(info.value)
    assert "not in open_clip's cache and downloading laion/CLIP-ViT-B-16-laion2B-s34B-b88K/ failed" in message
    assert "set MODEL.BACKBONE.NAME open_clip:ViT-B-16 and MODEL.BACKBONE.PATH to a local copy" in message
    with pytest.raises(ValueError, match=r"no pretrained tag 'laion9b' for ViT-B-16 .*laion2b_s34b_b88k"):
        load_clip("open_clip:ViT-B-16/laion9b", "")


def test_a_tag_trained_with_the_other_activation_names_the_matching_model():
    with pytest.raises(ValueError, match=r"open_clip:ViT-B-16/openai: the weights of tag 'openai' were trained with "
                                         r"quick_gelu, .* use open_clip:ViT-B-16-quickgelu/openai"):
        backbone_identity("open_clip:ViT-B-16/openai", "")


def test_a_tag_in_huggingfaces_cache_is_found_without_a_download(tmp_path, weights):
    snapshot = tmp_path / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K" / "refs").mkdir()
    (tmp_path / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K" / "refs" / "main").write_text("abc")
    file = snapshot / "open_clip_model.safetensors"
    file.write_bytes(b"weights")
    found = open_clip_backbone.cached_file(OpenClipName("ViT-B-16", "laion2b_s34b_b88k"), str(tmp_path))
    assert found == str(file)


def test_without_open_clip_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    with pytest.raises(ImportError, match=re.escape('needs open_clip: pip install -e ".[open_clip]"')):
        load_clip("open_clip:ViT-B-16", "/w.bin")


def test_open_clip_is_imported_only_for_an_open_clip_name():
    proc = python("import sys, trainers, mutual_prompt.clip as c; c.load_frozen_clip('toy', '', 'cpu', 'fp32'); "
                  "assert 'open_clip' not in sys.modules, 'imported'")
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_without_open_clip_train_py_ends_with_one_line_saying_how_to_install_it(weights, caltech_root, tmp_path):
    code = ("import os, sys, runpy; sys.modules['open_clip'] = None; sys.argv = sys.argv[1:]; "
            "sys.path.insert(0, os.path.dirname(sys.argv[0])); runpy.run_path(sys.argv[0], run_name='__main__')")
    argv = ["--root", caltech_root, "--trainer", "MutualPrompt", "--output-dir", str(tmp_path / "out"),
            "--dataset-config-file", os.path.join(CONFIGS, "datasets", "caltech101.yaml"),
            "--config-file", os.path.join(CONFIGS, "trainers", "MutualPrompt", "toy.yaml"),
            "MODEL.BACKBONE.NAME", "open_clip:mp-test-vit", "MODEL.BACKBONE.PATH", weights["mp-test-vit"][1],
            "USE_CUDA", "False"]
    proc = subprocess.run([sys.executable, "-c", code, os.path.join(REPO_ROOT, "train.py"), *argv], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'train.py: error: MODEL.BACKBONE.NAME open_clip:<model> needs open_clip: pip install -e ".[open_clip]"')


# 4. The backbone identity (run fingerprint)

def test_the_identity_is_the_model_its_activation_and_the_files_sha256(weights):
    for name, activation in (("mp-test-vit", "gelu"), ("mp-test-vit-quickgelu", "quick_gelu")):
        file = weights[name][2]
        assert backbone_identity(f"open_clip:{name}", file) == {
            "MODEL.BACKBONE.ARCH": f"open_clip:{name}", "MODEL.BACKBONE.ACTIVATION": activation,
            "MODEL.BACKBONE.SHA256": sha256_of_file(file)}


# 5. Image towers that are not a ViT: zero-shot and FTP only; TVP refused

def trainer_cfg(root: str, weights_file: str, name: str, out: str, *opts: str):
    argv = ["--root", root, "--trainer", "MutualPrompt", "--output-dir", out,
            "--dataset-config-file", os.path.join(CONFIGS, "datasets", "caltech101.yaml"),
            "--config-file", os.path.join(CONFIGS, "trainers", "MutualPrompt", "toy.yaml"),
            "MODEL.BACKBONE.NAME", f"open_clip:{name}", "MODEL.BACKBONE.PATH", weights_file,
            "INPUT.SIZE", f"({SIZES[name]}, {SIZES[name]})", "USE_CUDA", "False", *opts]
    return train.setup_cfg(train.build_parser().parse_args(argv))


@pytest.mark.parametrize("name", ["mp-test-convnext", "mp-test-rn"])
def test_tvp_on_a_tower_without_tokens_is_refused_saying_why(weights, caltech_root, tmp_path, name):
    cfg = trainer_cfg(caltech_root, weights[name][1], name, str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=rf"TRAINER.MUTUAL_PROMPT.TVP.ENABLED True needs a vision transformer image "
                                          rf"tower: .* open_clip:{name} \(\w+\) has none; set "
                                          r"TRAINER.MUTUAL_PROMPT.TVP.ENABLED False \(FTP only\)"):
        build_trainer(cfg)


@pytest.mark.parametrize("name", ["mp-test-convnext", "mp-test-rn"])
@torch.no_grad()
def test_ftp_only_and_zero_shot_run_on_the_towers_own_forward(weights, caltech_root, tmp_path, name):
    cfg = trainer_cfg(caltech_root, weights[name][1], name, str(tmp_path / "out"), "TRAINER.MUTUAL_PROMPT.TVP.ENABLED",
                      "False")
    trainer = build_trainer(cfg)
    assert isinstance(trainer.model.clip_model, OpenClipTowerCLIP) and trainer.model.image_encoder is None
    x = images(name, 2)
    logits = trainer.model_inference(x)
    assert logits.shape == (2, len(trainer.dm.dataset.classnames)) and torch.isfinite(logits).all()
    zeroshot_cfg = trainer_cfg(caltech_root, weights[name][1], name, str(tmp_path / "zs"), "TRAINER.NAME", "ZeroshotMP")
    zeroshot = build_trainer(zeroshot_cfg)
    expected = F.normalize(weights[name][0].encode_image(x), dim=-1)
    assert max_difference(F.normalize(zeroshot.encode_image(x).float(), dim=-1), expected) < TOLERANCE


# 6. train.py end to end

def result_accuracy(log: str) -> str:
    return re.search(r"\* accuracy: ([\d.]+)%", log.split("=> result")[-1]).group(1)


@pytest.mark.slow
def test_train_then_eval_only_from_a_weights_file_and_eval_refuses_other_weights(weights, registered, caltech_root,
                                                                                  tmp_path):
    out = tmp_path / "run"
    common = ["--root", caltech_root, "--trainer", "MutualPrompt",
              "--dataset-config-file", os.path.join(CONFIGS, "datasets", "caltech101.yaml"),
              "--config-file", os.path.join(CONFIGS, "trainers", "MutualPrompt", "toy.yaml")]
    backbone = ["MODEL.BACKBONE.NAME", "open_clip:mp-test-vit", "USE_CUDA", "False"]
    file = weights["mp-test-vit"][2]
    trained = train_py(tmp_path, registered, *common, "--output-dir", str(out), *backbone, "MODEL.BACKBONE.PATH", file,
                       "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "1")
    assert trained.returncode == 0, trained.stderr[-3000:]
    fingerprint = (out / "run_fingerprint.json").read_text()
    assert '"MODEL.BACKBONE.ARCH": "open_clip:mp-test-vit"' in fingerprint
    assert f'"MODEL.BACKBONE.SHA256": "{sha256_of_file(file)}"' in fingerprint

    eval_only = ["--eval-only", "--model-dir", str(out), "--load-epoch", "1"]
    evaluated = train_py(tmp_path, registered, *common, "--output-dir", str(tmp_path / "eval"), *eval_only, *backbone,
                         "MODEL.BACKBONE.PATH", file)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert result_accuracy((tmp_path / "eval" / "log.txt").read_text()) == result_accuracy((out / "log.txt").read_text())

    # the same weights under the QuickGELU model: another architecture and activation
    refused = train_py(tmp_path, registered, *common, "--output-dir", str(tmp_path / "other"), *eval_only,
                       "MODEL.BACKBONE.NAME", "open_clip:mp-test-vit-quickgelu", "MODEL.BACKBONE.PATH", file,
                       "USE_CUDA", "False")
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert f"--model-dir {out} was trained with other values of keys that shape the model's output" in last
    assert ("MODEL.BACKBONE.ACTIVATION: 'gelu' trained, 'quick_gelu' now; MODEL.BACKBONE.ARCH: 'open_clip:mp-test-vit' "
            "trained, 'open_clip:mp-test-vit-quickgelu' now") in last, last
    # the same model with other weights
    other = save_safetensors(random_model("mp-test-vit", seed=1), tmp_path / "other.safetensors")
    refused = train_py(tmp_path, registered, *common, "--output-dir", str(tmp_path / "other_file"), *eval_only,
                       *backbone, "MODEL.BACKBONE.PATH", other)
    assert refused.returncode == 2
    last = refused.stderr.strip().splitlines()[-1]
    assert f"MODEL.BACKBONE.SHA256: '{sha256_of_file(file)}' trained, '{sha256_of_file(other)}' now" in last, last
    assert f"MODEL.BACKBONE.PATH: '{file}' trained" in last, last
