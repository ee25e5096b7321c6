"""``python -m mutual_prompt.doctor`` on a generated data folder: one good dataset, one missing, one
without its split file, one partially extracted and one with an unreadable image."""
import dataclasses
import os
import re
import shutil
import subprocess
import sys

import pytest

from helpers.dataset_loading import load
from helpers.dataset_trees import TREES
from mutual_prompt.tools import dataset_catalog, doctor

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BY_CONFIG = {tree.config: tree for tree in TREES}
GOOD, PARTIAL, UNREADABLE = "caltech101", "eurosat", "food101"
NO_SPLIT, NO_SPLIT_BUILDABLE, MISSING = "oxford_pets", "dtd", "sun397"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("data"))
    for name in (GOOD, PARTIAL, UNREADABLE, NO_SPLIT, NO_SPLIT_BUILDABLE):
        BY_CONFIG[name].build(root)
    for name in (GOOD, PARTIAL, UNREADABLE):
        load(root, BY_CONFIG[name].name)  # writes the split file
    shutil.rmtree(os.path.join(root, "oxford_pets", "annotations"))  # no split file, nor what builds one
    os.remove(os.path.join(root, "eurosat", "2750", "Forest", "Forest_0000.jpg"))
    with open(os.path.join(root, "food-101", "images", "bibimbap", "bibimbap_0000.jpg"), "wb") as f:
        f.write(b"not an image")
    return root


@pytest.fixture
def good_counts(monkeypatch):
    """The catalog's expected counts made those of the generated Caltech101 tree (5 classes, 2/1/2 each)."""
    entry = dataclasses.replace(dataset_catalog.CATALOG[GOOD], classes=5, train=10, val=5, test=10)
    monkeypatch.setitem(dataset_catalog.CATALOG, GOOD, entry)


def by_name(reports):
    return {report.name: report for report in reports}


def test_each_dataset_gets_its_status(data_root, good_counts):
    reports = by_name(doctor.check_datasets(data_root, [GOOD, PARTIAL, UNREADABLE, NO_SPLIT, NO_SPLIT_BUILDABLE,
                                                        MISSING, "toy_shapes"], progress=False))
    assert {name: r.status for name, r in reports.items()} == {
        GOOD: "ok", PARTIAL: "broken", UNREADABLE: "broken", NO_SPLIT: "broken", NO_SPLIT_BUILDABLE: "warning",
        MISSING: "missing", "toy_shapes": "renders itself"}
    assert reports[GOOD].findings == []
    assert "images: 25 of 25 on disk; 25 checked (all), 0 do not open" in reports[GOOD].lines
    problems = {name: [f.problem for f in r.findings if f.fatal] for name, r in reports.items()}
    assert "1 image of the 25 listed is not on disk (a partial extraction?)" in problems[PARTIAL]
    missing = next(f for f in reports[PARTIAL].findings if f.fatal)
    assert missing.detail.endswith(os.path.join("2750", "Forest", "Forest_0000.jpg"))
    assert "1 of the 25 images checked (all) does not open" in problems[UNREADABLE]
    assert problems[NO_SPLIT] == ["no split file split_zhou_OxfordPets.json, and a run cannot build one: "
                                  "annotations/trainval.txt, annotations/test.txt missing"]
    assert dataset_catalog.CATALOG[NO_SPLIT].split_source in reports[NO_SPLIT].findings[0].fix
    assert reports[MISSING].findings[0].problem == f"no folder {os.path.join(data_root, 'sun397')}"
    assert "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz" in reports[MISSING].findings[0].fix
    assert not doctor.usable(list(reports.values()))
    assert doctor.usable([reports[GOOD], reports[NO_SPLIT_BUILDABLE], reports["toy_shapes"]])


def test_counts_that_differ_from_coops_split_are_a_warning(data_root):
    report = doctor.check_datasets(data_root, [GOOD], progress=False)[0]
    assert report.status == "warning" and report.usable
    assert report.findings[0].problem == ("5 classes, train 10, val 5, test 10 where CoOp's split has 100 classes, "
                                          "train 4,128, val 1,649, test 2,465")


def test_a_large_dataset_has_a_bounded_sample_of_its_images_checked(monkeypatch):
    monkeypatch.setattr(doctor, "CHECK_ALL_UP_TO", 10)
    monkeypatch.setattr(doctor, "SAMPLE_SIZE", 4)
    paths = [f"image_{i}.jpg" for i in range(30)]
    sample = doctor.images_to_check(paths)
    assert len(sample) == 4 and set(sample) <= set(paths) and sample == doctor.images_to_check(paths)
    assert doctor.images_to_check(paths[:10]) == paths[:10]


def test_a_broken_split_file_is_named(tmp_path):
    BY_CONFIG["eurosat"].build(str(tmp_path))
    (tmp_path / "eurosat" / "split_zhou_EuroSAT.json").write_text('{"train": [], "val": []}')
    report = doctor.check_datasets(str(tmp_path), ["eurosat"], progress=False)[0]
    assert report.status == "broken"
    assert report.findings[0].problem.startswith("split file unreadable: split file ")
    assert "missing key(s) ['test']" in report.findings[0].problem


def test_unknown_names_get_a_did_you_mean_and_registry_names_are_accepted():
    assert doctor.resolve_names(["Caltech101", "caltech101", "DTD", "ToyShapes"]) == ["caltech101", "dtd",
                                                                                      "toy_shapes"]
    with pytest.raises(ValueError, match=r"unknown dataset 'caltech' \(did you mean 'caltech101'"):
        doctor.resolve_names(["caltech"])


def run_doctor(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mutual_prompt.doctor", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300, env=env or dict(os.environ))


def test_the_command_reports_the_environment_and_ends_with_the_table(data_root):
    proc = run_doctor("--root", data_root, GOOD, PARTIAL, MISSING)
    assert proc.returncode == 1, proc.stderr[-3000:]
    out = proc.stdout
    for line in ("Environment", "  torch ", "  backend: ", "  clip: clip-anytorch ", "  CLIP weights in ",
                 "  extra [slurm]: submitit "):
        assert line in out
    assert f"Data folder: {data_root} (--root)" in out
    table = out[re.search(r"^dataset\s+status\s+problem\s+fix$", out, flags=re.M).start():]
    rows = re.findall(r"^(\w+)\s+(warning|broken|missing|ok)\s", table, flags=re.M)
    assert rows == [(GOOD, "warning"), (PARTIAL, "broken"), (PARTIAL, "broken"), (MISSING, "missing")]
    assert out.rstrip().endswith("Not every dataset named is usable.")


def test_exit_status_is_0_when_every_named_dataset_is_usable_and_2_for_an_unknown_name(data_root):
    assert run_doctor("--root", data_root, GOOD, NO_SPLIT_BUILDABLE).returncode == 0
    proc = run_doctor("--root", data_root, "caltech")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "python -m mutual_prompt.doctor: error: unknown dataset 'caltech' (did you mean 'caltech101'")


def test_with_no_dataset_named_the_present_ones_are_checked_and_the_absent_ones_listed(data_root):
    proc = run_doctor("--root", data_root)
    assert proc.returncode == 1
    assert re.search(r"^Absent \(no folder under .*; not checked\): imagenet, stanford_cars, ", proc.stdout, re.M)
    assert re.search(r"^oxford_pets\s+broken\s", proc.stdout, re.M)
    assert "stanford_cars: absent" not in proc.stdout  # an absent dataset not named is that one line only


def test_without_root_or_data_the_default_is_named(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATA"}
    proc = run_doctor("toy_shapes", env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (f"Data folder: {os.path.join(REPO_ROOT, 'data')} (neither --root nor DATA is set: using the default "
            "<repo>/data, as the sweep does)") in proc.stdout
    env["DATA"] = str(tmp_path)
    assert f"Data folder: {tmp_path} ($DATA)" in run_doctor("toy_shapes", env=env).stdout


def test_the_layout_each_fix_points_to_is_a_heading_of_datasets_md():
    with open(os.path.join(REPO_ROOT, "docs", "DATASETS.md"), encoding="utf-8") as f:
        headings = re.findall(r"^## (.+)$", f.read(), flags=re.M)
    anchors = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
    for entry in dataset_catalog.CATALOG.values():
        assert doctor.layout_doc(entry).split("#")[1] in anchors, entry.config_name
    assert "check-a-setup-the-doctor" in anchors


def test_the_environment_names_each_cuda_device(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"Card {i}")
    assert doctor.torch_lines()[1] == f"CUDA {torch.version.cuda}: 2 devices: Card 0, Card 1"


@pytest.mark.parametrize("has, advice", [(True, "yes (PREC bf16 is the fast CPU precision"),
                                          (False, "none (keep PREC fp32 on the CPU"),
                                          (None, "cannot tell on this system (PREC fp32")])
def test_without_cuda_the_environment_says_which_precision_suits_the_cpu(monkeypatch, has, advice):
    import torch

    from mutual_prompt.clip import precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_bf16_instructions", lambda: has)
    assert doctor.torch_lines()[2].startswith(f"CPU bf16 instructions: {advice}")


def test_absent_weights_are_a_note_with_the_fix_and_present_ones_are_listed(tmp_path):
    lines, findings = doctor.weights_lines(str(tmp_path))
    assert lines == [f"CLIP weights in {tmp_path}: none"]
    assert findings[0].problem == f"no ViT-B/16 weights (the vit_b16_* configs' backbone) at {tmp_path / 'ViT-B-16.pt'}"
    assert not findings[0].fatal
    (tmp_path / "ViT-B-16.pt").write_bytes(b"weights")
    assert doctor.weights_lines(str(tmp_path)) == ([f"CLIP weights in {tmp_path}: ViT-B/16"], [])


def test_help_lists_the_datasets_and_the_exit_statuses():
    text = doctor.build_parser().format_help()
    assert "caltech101, dtd, eurosat" in text and "toy_shapes" in text and "``" not in text
    assert "Exit status: 0 when every dataset checked is usable, 1 when one is not, 2 for an unknown" in text
    assert f"a random sample of {doctor.SAMPLE_SIZE:,}" in text


def test_datasets_split_by_folders_or_lists_are_checked_too(tmp_path):
    root = str(tmp_path)
    for name in ("imagenet", "fgvc_aircraft", "imagenet_a"):
        BY_CONFIG[name].build(root)
    empty = tmp_path / "imagenet" / "images" / "val" / "n01440764"
    for image in empty.iterdir():
        image.unlink()
    (tmp_path / "fgvc_aircraft" / "images" / "1000000.jpg").unlink()
    (tmp_path / "imagenet-adversarial" / "classnames.txt").unlink()
    reports = by_name(doctor.check_datasets(root, ["imagenet", "fgvc_aircraft", "imagenet_a"], progress=False))
    fatal = {name: [f.problem for f in r.findings if f.fatal] for name, r in reports.items()}
    assert fatal == {"imagenet": ["1 class folder without images (a partial extraction?)"],
                     "fgvc_aircraft": ["1 image of the 35 listed is not on disk (a partial extraction?)"],
                     "imagenet_a": ["no classnames.txt"]}
    assert next(f for f in reports["imagenet"].findings if f.fatal).detail == str(empty)
    assert "5 classes (expected 1,000); train 20 (expected 1,281,167); test 8 (expected 50,000)" in \
        reports["imagenet"].lines
