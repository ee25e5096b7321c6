"""A host repository's own ``clip`` package (as MaPLe and PromptSRC ship one at their root) and ours:
neither replaces nor breaks the other, in the same process."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from mutual_prompt.clip import loader, openai

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# MaPLe's clip/ in miniature: build_model takes a second argument, tokenize is its own.
HOST_CLIP_FILES = {
    "clip/__init__.py": "from .clip import *\n",
    "clip/clip.py": """
        from .model import build_model

        def tokenize(texts, context_length=77):
            return "host tokens"

        def load(name, device="cpu", design_details=None):
            return build_model({}, design_details)
    """,
    "clip/model.py": """
        def build_model(state_dict, design_details):
            return ("host model", design_details)
    """,
}

# What a host train.py does: its root is first on sys.path (python puts the script's folder there), its
# trainers import their clip (``from clip import clip``) before ours is imported, then ours trains.
HOST_TRAIN = """
    import os
    import sys

    import torch

    from clip import clip as host_clip  # the host's, imported first (as MaPLe's trainers do)

    import trainers.mutual_prompt  # the host's copy of our trainer file
    from mutual_prompt.backend import build_trainer, get_cfg_default

    sys.path.append(sys.argv[1])  # our repository, last: only for the ToyShapes dataset
    import datasets.toy_shapes  # noqa: F401

    cfg = get_cfg_default()
    trainers.mutual_prompt.extend_cfg(cfg)
    cfg.merge_from_file(os.path.join(sys.argv[1], "configs", "datasets", "toy_shapes.yaml"))
    cfg.merge_from_file(os.path.join(sys.argv[1], "configs", "trainers", "MutualPrompt", "toy.yaml"))
    cfg.merge_from_list(["DATASET.ROOT", sys.argv[2], "OUTPUT_DIR", sys.argv[3], "TRAINER.NAME", "MutualPrompt",
                         "DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "1",
                         "TEST.NO_TEST", "True", "USE_CUDA", "False", "SEED", "1"])
    cfg.freeze()
    trainer = build_trainer(cfg)
    before = trainer.model.prompt_learner.ctx.detach().clone()
    trainer.train()
    after = trainer.model.prompt_learner.ctx.detach()
    print("trained:", not torch.equal(before, after))

    import clip
    print("host clip module:", os.path.dirname(clip.__file__) == os.path.join(os.path.dirname(__file__), "clip"))
    print("host build_model:", clip.model.build_model({}, "design") == ("host model", "design"))
    print("host tokenize:", host_clip.tokenize(["a cat"]) == "host tokens")
    print("host load:", host_clip.load("ViT-B/16", design_details="d") == ("host model", "d"))
"""


def write_tree(root, files: dict) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


@pytest.mark.slow
def test_trainer_trains_inside_a_host_with_its_own_clip_and_leaves_it_working(tmp_path):
    host = tmp_path / "host"
    write_tree(host, dict(HOST_CLIP_FILES, **{"trainers/__init__.py": "", "train.py": HOST_TRAIN}))
    shutil.copy(os.path.join(REPO_ROOT, "trainers", "mutual_prompt.py"), host / "trainers" / "mutual_prompt.py")
    env = dict(os.environ, MUTUAL_PROMPT_BACKEND="builtin", PYTHONPATH="")
    proc = subprocess.run([sys.executable, str(host / "train.py"), REPO_ROOT, str(tmp_path / "data"), str(tmp_path / "out")],
                          cwd=str(host), env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    for line in ("trained: True", "host clip module: True", "host build_model: True", "host tokenize: True",
                 "host load: True"):
        assert line in proc.stdout, proc.stdout[-3000:]
    assert (tmp_path / "out" / "prompt_learner" / "model.pth.tar-1").is_file()


def test_importing_our_package_neither_imports_nor_replaces_a_clip_module(tmp_path):
    code = ("import sys; import trainers.mutual_prompt, trainers.zeroshot_mp, mutual_prompt.clip.loader; "
            "print('clip' in sys.modules, sorted(m for m in sys.modules if m.startswith('mutual_prompt.clip.openai')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, MUTUAL_PROMPT_BACKEND="builtin"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[0] == ("False ['mutual_prompt.clip.openai', 'mutual_prompt.clip.openai.clip', "
                                          "'mutual_prompt.clip.openai.model', 'mutual_prompt.clip.openai.simple_tokenizer']")


def test_openai_clip_is_the_installed_distribution():
    assert os.path.dirname(openai.model.__file__) == openai.installed_clip_dir()
    assert openai.tokenize(["a photo of a cat."]).shape == (1, 77)


def test_a_missing_clip_distribution_says_what_to_install():
    with pytest.raises(ImportError, match=r"pip install clip-anytorch.*no-such-clip: not installed"):
        openai.installed_clip_dir(("no-such-clip",))


def test_build_clip_names_the_file_when_build_model_has_another_signature(monkeypatch):
    def host_build_model(state_dict, design_details):  # MaPLe's signature
        raise AssertionError("never called with one argument")

    monkeypatch.setattr(loader, "build_model", host_build_model)
    with pytest.raises(ValueError, match=r"/weights/ViT-B-16\.pt does not hold OpenAI CLIP weights.*TypeError"):
        loader.build_clip({}, "/weights/ViT-B-16.pt")
