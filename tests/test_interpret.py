"""interpret_prompt.py and mutual_prompt/tools/interpret.py: nearest words of the learned context (the
CTX_INIT words at distance 0 before training), FTP's conditioned context and TVP's top-k recall against
hand computations, and the command on a trained toy run (tables, --csv, --figure) and its refusals."""
import csv
import os

import pytest
import torch

import interpret_prompt
from helpers.clip_weights import tiny_clip
from mutual_prompt.clip import load_frozen_clip, tokenize
from mutual_prompt.method.ftp import FineGrainedTextPrompt
from mutual_prompt.method.tvp import TextReorganizedVisualPrompt
from mutual_prompt.run.checkpoints import save_checkpoint
from mutual_prompt.run.fingerprint import FINGERPRINT_FILE
from mutual_prompt.tools import interpret
from trainers.mutual_prompt import build_mutual_prompt_clip

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_METHOD = os.path.join(REPO_ROOT, "configs", "trainers", "MutualPrompt", "toy.yaml")
TOY_DATASET = os.path.join(REPO_ROOT, "configs", "datasets", "toy_shapes.yaml")
INIT_WORDS = ["a", "photo", "of", "a"]


def run_main(capsys, *argv: str):
    """(exit status, stdout, stderr) of interpret_prompt.main."""
    try:
        interpret_prompt.main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def toy_cfg(*opts: str):
    args = interpret_prompt.build_parser().parse_intermixed_args(["x", "1", "--config-file", TOY_METHOD, *opts])
    return interpret_prompt.setup_cfg(args, "")[0]


# Words


def test_the_vocabulary_is_openai_s_bpe_with_word_pieces_marked():
    words = interpret.vocabulary()
    assert len(words) == 49408 and words[-2:] == ("<|startoftext|>", "<|endoftext|>")
    assert [words[i] for i in tokenize("a photo of a")[0, 1:5].tolist()] == INIT_WORDS
    pieces = [words[i] for i in tokenize("photosynthesising")[0, 1:].tolist() if i not in (0, 49407)]
    assert len(pieces) > 1 and all(p.endswith("-") for p in pieces[:-1]) and not pieces[-1].endswith("-")


def test_nearest_words_are_exact_euclidean_distances_nearest_first():
    embedding = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
    vectors = torch.stack([embedding[5], embedding[7] + 0.01])
    distances, ids = interpret.nearest_words(vectors, embedding, 3)
    brute = ((vectors[:, None] - embedding[None]) ** 2).sum(-1).sqrt()
    expected = brute.sort(dim=1)
    assert ids.tolist() == expected.indices[:, :3].tolist() and ids[:, 0].tolist() == [5, 7]
    torch.testing.assert_close(distances, expected.values[:, :3])
    assert distances[0, 0].item() == 0.0


def test_a_context_of_another_width_or_another_vocabulary_is_an_error():
    embedding = torch.zeros(10, 8)
    with pytest.raises(ValueError, match="has 10 rows, OpenAI's BPE vocabulary 49,408 tokens"):
        interpret.word_table(torch.zeros(2, 8), embedding, interpret.vocabulary(), 3)
    with pytest.raises(ValueError, match="the context tokens are 6 wide, the backbone's token embedding 8"):
        interpret.word_table(torch.zeros(2, 6), embedding, [str(i) for i in range(10)], 3)


def test_the_ctx_init_words_come_back_at_distance_0_from_the_initial_prompt_learner():
    clip_model = tiny_clip()
    model = build_mutual_prompt_clip(toy_cfg(), ["red circle", "blue square", "green star"], clip_model)
    checkpoint = {"state_dict": model.prompt_learner.state_dict(), "epoch": 0}
    result = interpret.context_interpretation("init", checkpoint, clip_model.token_embedding.weight, 2,
                                              "a photo of a")
    nearest = [row for row in result.context if row.rank == 1]
    assert [(row.token, row.word, row.distance) for row in nearest] == [(1, "a", 0.0), (2, "photo", 0.0),
                                                                       (3, "of", 0.0), (4, "a", 0.0)]
    assert all(row.distance > 0 for row in result.context if row.rank == 2)
    assert result.init_words == INIT_WORDS and result.summary == "epoch=0"


def test_a_checkpoint_saved_before_training_gives_the_init_words_through_the_command(tmp_path, capsys):
    clip_model = load_frozen_clip("toy", "", "cpu", "fp32")
    model = build_mutual_prompt_clip(toy_cfg(), ["red circle", "blue square"], clip_model)
    save_checkpoint({"state_dict": model.prompt_learner.state_dict(), "epoch": 0},
                    str(tmp_path / "run" / "prompt_learner"))
    code, out, err = run_main(capsys, str(tmp_path / "run"), "2", "--words-only", "--config-file", TOY_METHOD)
    assert code == 0, err
    assert f"Checkpoint: {tmp_path / 'run' / 'prompt_learner' / 'model.pth.tar-0'} (epoch=0)" in out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [row[:4] for row in rows] == [["1", "a", "a", "0.0000"], ["2", "photo", "photo", "0.0000"],
                                         ["3", "of", "of", "0.0000"], ["4", "a", "a", "0.0000"]]
    assert f"no {FINGERPRINT_FILE} beside the checkpoint" in out
    assert "FTP:" not in out and "TVP:" not in out  # --words-only


# FTP and TVP against hand computations


def test_the_conditioned_context_is_ctx_plus_the_mean_offset():
    torch.manual_seed(0)
    learner = torch.nn.Module()
    learner.ctx = torch.nn.Parameter(torch.randn(3, 6))
    learner.ftp = FineGrainedTextPrompt(vis_dim=32, ctx_dim=6, n_ctx=3, mode="fine")
    x0 = torch.randn(10, 32)
    mean_ctx, norms = interpret.conditioned_context(learner, x0, batch_size=4)
    offsets = learner.ftp(x0)
    torch.testing.assert_close(mean_ctx, learner.ctx + offsets.mean(dim=0))
    torch.testing.assert_close(norms, offsets.norm(dim=-1).mean(dim=0))


def test_tvp_recall_and_class_sets_on_a_tiny_case_by_hand():
    # Four classes on the axes of a plane; TVP keeps each image's top 2.
    tvp = TextReorganizedVisualPrompt(embed_dim=2, vis_width=4, n_tokens=1, depth=1, topk=2, temp=0.01)
    tvp.set_class_text_features(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]]))
    x0 = torch.tensor([[0.9, 0.1],    # top 2: classes 0, 1; true 0 -> in, first
                       [0.2, 0.8],    # top 2: 1, 0; true 0 -> in, not first
                       [-0.7, -0.3],  # top 2: 2, 3; true 1 -> out
                       [0.6, 0.4]])   # top 2: 0, 1; true 1 -> in, not first
    labels = torch.tensor([0, 0, 1, 1])
    selection = interpret.tvp_selection(tvp, x0, labels, ["a", "b", "c", "d"], n_sets=5)
    assert selection.k == 2 and selection.recall == 0.75 and selection.top1 == 0.25
    assert selection.class_sets == [(("a", "b"), 3), (("c", "d"), 1)]
    _, index = tvp.top_classes(x0)  # the very selection the visual prompt is built from
    assert index.tolist() == [[0, 1], [1, 0], [2, 3], [0, 1]]


def test_the_csv_holds_every_table_in_its_columns():
    result = interpret.Interpretation(
        "ckpt", "epoch=1", 1, ["a"], [interpret.Neighbour(1, 1, 320, "a", 0.0)],
        conditioned=[interpret.Neighbour(1, 1, 1125, "photo", 0.5)], offset_norms=[0.25], context_norms=[1.0],
        split="test", n_images=4, tvp=interpret.TvpSelection(2, 0.75, 0.25, [(("a", "b"), 3)]))
    assert interpret.csv_rows(result) == [
        ["context", 1, 1, 320, "a", "0.000000"], ["conditioned", 1, 1, 1125, "photo", "0.500000"],
        ["offset_norm", 1, "", "", "", "0.250000"], ["tvp_recall", "", 2, "", "", "0.750000"],
        ["tvp_top1", "", 1, "", "", "0.250000"], ["tvp_class_set", "", 1, "", "a|b", 3]]
    text = interpret.render_text(result)
    assert "top-2 recall): 0.7500" in text and "0.2500 (25%)" in text and "3         75.0%    a, b" in text


# The command on a trained toy run


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """One epoch of MutualPrompt (FTP fine + TVP) on one shot of ToyShapes' base classes."""
    import train

    tmp = tmp_path_factory.mktemp("interpret")
    train.main(["--root", str(tmp / "data"), "--trainer", "MutualPrompt", "--seed", "1", "--dataset-config-file",
                TOY_DATASET, "--config-file", TOY_METHOD, "--output-dir", str(tmp / "run"), "DATASET.NUM_SHOTS", "1",
                "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "1", "TEST.SPLIT", "val", "USE_CUDA", "False"])
    return tmp / "data", tmp / "run"


@pytest.mark.slow
def test_a_trained_toy_run_gives_tables_csv_and_figure(toy_run, tmp_path, capsys):
    data, run = toy_run
    capsys.readouterr()
    code, out, err = run_main(capsys, str(run), "3", "--root", str(data), "--split", "val", "--csv",
                              str(tmp_path / "words.csv"), "--figure", str(tmp_path / "words.png"))
    assert code == 0, err
    assert f"Checkpoint: {run / 'prompt_learner' / 'model.pth.tar-1'} (epoch=1)" in out
    assert "Learned context (4 tokens):" in out
    assert "FTP: the image-conditioned context ctx + s(x0), averaged over the 32 images of the val split" in out
    assert "TVP: the top-5 classes of each image" in out and "Loading trainer" in err and "Loading trainer" not in out
    with open(tmp_path / "words.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(interpret.CSV_COLUMNS)
    for section in ("context", "conditioned"):
        mine = [row for row in rows if row["section"] == section]
        expected = [(str(m), str(r)) for m in range(1, 5) for r in (1, 2, 3)]
        assert [(row["token"], row["rank"]) for row in mine] == expected
    context = [row for row in rows if row["section"] == "context"]
    assert [row["text"] for row in context if row["rank"] == "1"] == INIT_WORDS  # one epoch moves little
    recall = float(next(row["value"] for row in rows if row["section"] == "tvp_recall"))
    top1 = float(next(row["value"] for row in rows if row["section"] == "tvp_top1"))
    assert 0.0 <= top1 <= recall <= 1.0 and f"(top-5 recall): {recall:.4f}" in out
    sets = [row for row in rows if row["section"] == "tvp_class_set"]
    assert 1 <= len(sets) <= 5 and sum(int(row["value"]) for row in sets) <= 32
    assert all(len(row["text"].split("|")) == 5 for row in sets)
    assert (tmp_path / "words.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_overrides_that_change_the_trained_model_are_refused(toy_run, capsys):
    data, run = toy_run
    code, _, err = run_main(capsys, str(run), "3", "--root", str(data), "TRAINER.MUTUAL_PROMPT.TVP.TOPK", "3")
    assert code == 2
    assert "TRAINER.MUTUAL_PROMPT.TVP.TOPK: 5 trained, 3 now" in err


@pytest.mark.slow
def test_the_analyses_need_the_data_folder(toy_run, capsys):
    _, run = toy_run
    code, _, err = run_main(capsys, str(run), "3")
    assert code == 2 and "give --root DATA" in err and "--words-only" in err
    code, out, err = run_main(capsys, str(run), "3", "--words-only")  # the backbone comes from the fingerprint
    assert code == 0, err
    assert "Learned context (4 tokens):" in out and "TVP:" not in out


# Refusals


def test_a_folder_without_checkpoints_is_an_error_naming_it(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_main(capsys, str(tmp_path / "empty"), "3")
    assert code == 2 and f"{tmp_path / 'empty' / 'prompt_learner'} holds no checkpoint" in err
    code, _, err = run_main(capsys, str(tmp_path / "missing"), "3")
    assert code == 2 and f"{tmp_path / 'missing'}: no such file or folder" in err


def test_a_checkpoint_without_a_context_is_an_error(tmp_path, capsys):
    save_checkpoint({"state_dict": {"weight": torch.zeros(2)}, "epoch": 1}, str(tmp_path / "prompt_learner"))
    code, _, err = run_main(capsys, str(tmp_path / "prompt_learner" / "model.pth.tar-1"), "3", "--words-only",
                            "--backbone", "toy")
    assert code == 2 and "holds no 'ctx'; a MutualPrompt prompt_learner checkpoint" in err


def test_without_fingerprint_or_config_the_backbone_must_be_given(tmp_path, capsys):
    clip_model = tiny_clip()
    model = build_mutual_prompt_clip(toy_cfg(), ["red circle"], clip_model)
    path = save_checkpoint({"state_dict": model.prompt_learner.state_dict(), "epoch": 0}, str(tmp_path))
    code, _, err = run_main(capsys, path, "3", "--words-only")
    assert code == 2 and "the backbone is unknown" in err and "--backbone NAME" in err


def test_the_model_best_checkpoint_is_read_before_the_newest(tmp_path):
    folder = tmp_path / "prompt_learner"
    for epoch in (1, 2):
        save_checkpoint({"state_dict": {}, "epoch": epoch}, str(folder), is_best=epoch == 1)
    assert interpret.locate_checkpoint(str(tmp_path)) == (str(folder / "model-best.pth.tar"), str(tmp_path))
    assert interpret.locate_checkpoint(str(tmp_path), 2) == (str(folder / "model.pth.tar-2"), str(tmp_path))
    os.remove(folder / "model-best.pth.tar")
    assert interpret.locate_checkpoint(str(tmp_path)) == (str(folder / "model.pth.tar-2"), str(tmp_path))
    assert interpret.locate_checkpoint(str(folder / "model.pth.tar-1")) == (str(folder / "model.pth.tar-1"),
                                                                             str(tmp_path))  # its run's fingerprint
    with pytest.raises(ValueError, match="--load-epoch 2 goes with a run folder"):
        interpret.locate_checkpoint(str(folder / "model.pth.tar-2"), 2)


def test_bad_arguments_and_a_missing_matplotlib_are_refused_before_any_work(monkeypatch, capsys):
    code, _, err = run_main(capsys, "nowhere", "0")
    assert code == 2 and "topk must be >= 1" in err
    monkeypatch.setattr(interpret, "figure_problem", lambda: interpret.PLOT_MISSING)
    code, _, err = run_main(capsys, "nowhere", "3", "--figure", "f.png")
    assert code == 2 and "--figure: the figure needs matplotlib: pip install" in err


def test_figure_problem_names_matplotlib_when_it_does_not_import(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert interpret.figure_problem() == interpret.PLOT_MISSING
