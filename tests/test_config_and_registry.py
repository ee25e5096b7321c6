"""The built-in config (defaults, merging, errors that name the key and the file), its checks, one default
per key, and registries."""
import inspect
import os
import re
from typing import Dict

import pytest
import yaml

from mutual_prompt.run.config import Config
from mutual_prompt.runtime.config import get_cfg_default
from mutual_prompt.runtime.registry import Registry

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_defaults_have_dassl_and_coop_keys():
    cfg = get_cfg_default()
    assert tuple(cfg.INPUT.SIZE) == (224, 224)
    assert cfg.INPUT.INTERPOLATION == "bilinear"
    assert cfg.DATALOADER.TRAIN_X.SAMPLER == "RandomSampler"
    assert cfg.DATALOADER.TEST.SAMPLER == "SequentialSampler"
    assert cfg.DATASET.NUM_SHOTS == -1
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "all"
    assert cfg.MODEL.BACKBONE.PATH == ""
    assert cfg.OPTIM.NAME == "adam" and cfg.OPTIM.LR_SCHEDULER == "single_step"
    assert cfg.TEST.FINAL_MODEL == "last_step"
    assert isinstance(cfg, Config)


def test_defaults_are_a_fresh_copy_each_time():
    first = get_cfg_default()
    first.OPTIM.LR = 123.0
    first.INPUT.TRANSFORMS = ("normalize",)
    second = get_cfg_default()
    assert second.OPTIM.LR == 0.0003
    assert tuple(second.INPUT.TRANSFORMS) == ()


def test_merge_from_yaml_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "INPUT:\n  SIZE: (32, 48)\n  TRANSFORMS: ['random_flip', 'normalize']\n"
        "DATALOADER:\n  TRAIN_X:\n    BATCH_SIZE: 4\nOPTIM:\n  NAME: sgd\n  LR: 0.002\n"
    )
    cfg = get_cfg_default()
    cfg.merge_from_file(str(path))
    assert tuple(cfg.INPUT.SIZE) == (32, 48)
    assert list(cfg.INPUT.TRANSFORMS) == ["random_flip", "normalize"]
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 4
    assert cfg.OPTIM.NAME == "sgd" and cfg.OPTIM.LR == 0.002
    assert cfg.DATALOADER.TEST.BATCH_SIZE == 32  # untouched keys keep their defaults


def test_merge_from_key_value_list():
    cfg = get_cfg_default()
    cfg.merge_from_list(["SEED", "3", "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"])
    assert cfg.SEED == 3
    assert cfg.DATASET.NUM_SHOTS == 16
    assert cfg.DATASET.SUBSAMPLE_CLASSES == "base"


def test_misspelt_key_in_yaml_names_key_and_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("OPTIM:\n  LR_SCHEDULAR: cosine\n")
    cfg = get_cfg_default()
    with pytest.raises(KeyError) as err:
        cfg.merge_from_file(str(path))
    message = str(err.value)
    assert "OPTIM.LR_SCHEDULAR" in message
    assert str(path) in message


def test_missing_yaml_file_is_named(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(FileNotFoundError, match="absent.yaml"):
        get_cfg_default().merge_from_file(str(path))


def test_misspelt_key_on_command_line_names_key():
    cfg = get_cfg_default()
    # yacs reports an unknown override with an AssertionError; the message is what matters.
    with pytest.raises((KeyError, AssertionError)) as err:
        cfg.merge_from_list(["DATALOADER.TRAIN_X.BATCHSIZE", "8"])
    message = str(err.value)
    assert "DATALOADER.TRAIN_X.BATCHSIZE" in message
    assert "command-line" in message


def test_odd_length_override_list_is_an_error():
    cfg = get_cfg_default()
    with pytest.raises(ValueError, match="odd number"):
        cfg.merge_from_list(["SEED", "1", "OPTIM.LR"])
    assert cfg.SEED == -1


def test_registry_register_and_get():
    registry = Registry("THING")

    @registry.register()
    class Alpha:
        pass

    class Beta:
        pass

    registry.register(Beta)
    assert registry.get("Alpha") is Alpha
    assert registry.get("Beta") is Beta
    assert "Alpha" in registry and "Gamma" not in registry
    assert sorted(registry.registered_names()) == ["Alpha", "Beta"]


def test_registry_duplicate_name_is_an_error():
    registry = Registry("THING")

    def make(tag):
        class Alpha:
            kind = tag

        return Alpha

    first, second = make(1), make(2)
    registry.register(first)
    registry.register(first)  # the same object again is harmless (a module imported twice)
    with pytest.raises(KeyError, match='"Alpha" was already registered in the "THING" registry'):
        registry.register(second)
    assert registry.get("Alpha") is first
    registry.register(second, force=True)
    assert registry.get("Alpha") is second


def test_registry_unknown_name_lists_registered_names():
    registry = Registry("TRAINER")

    @registry.register()
    class CoOp:
        pass

    @registry.register()
    class MutualPrompt:
        pass

    with pytest.raises(KeyError) as err:
        registry.get("CoCoOp")
    message = str(err.value)
    assert '"CoCoOp"' in message and "TRAINER" in message
    assert "CoOp, MutualPrompt" in message


def test_a_python_config_file_is_refused_and_never_executed(tmp_path):
    from mutual_prompt.runtime import get_cfg_default

    marker = tmp_path / "executed"
    config = tmp_path / "evil.py"
    config.write_text(f"open({str(marker)!r}, 'w').write('ran')\nfrom yacs.config import CfgNode\ncfg = CfgNode()\n")
    with pytest.raises(ValueError, match=r"evil\.py: only YAML config files \(\.yaml or \.yml\) are accepted"):
        get_cfg_default().merge_from_file(str(config))
    assert not marker.exists()


def test_a_config_file_with_another_extension_is_refused(tmp_path):
    from mutual_prompt.runtime import get_cfg_default

    config = tmp_path / "config.txt"
    config.write_text("SEED: 3\n")
    with pytest.raises(ValueError, match=r"config\.txt: only YAML config files"):
        get_cfg_default().merge_from_file(str(config))
    yml = tmp_path / "config.yml"
    yml.write_text("SEED: 3\n")
    cfg = get_cfg_default()
    cfg.merge_from_file(str(yml))
    assert cfg.SEED == 3


# YAML errors name the file and the line


@pytest.mark.parametrize("text, where_and_why", [
    ("OPTIM:\n  NAME: sgd\n  LR: 0.1: 0.2\n",
     "line 3, column 10 ('LR: 0.1: 0.2'): not valid YAML: mapping values are not allowed here"),
    ("INPUT:\n  SIZE: [224, 224\n",
     "line 3, column 1: not valid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence "
     "at line 2, column 9)"),
], ids=["syntax error", "unclosed list names where it was opened"])
def test_a_yaml_syntax_error_names_the_file_and_the_line(tmp_path, text, where_and_why):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        get_cfg_default().merge_from_file(str(path))
    assert str(err.value) == f"{path}, {where_and_why}"


def test_a_python_tag_is_refused_naming_the_file_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "tagged.yaml"
    path.write_text(f"SEED: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ValueError) as err:
        get_cfg_default().merge_from_file(str(path))
    assert str(err.value).startswith(f"{path}, line 1, column 7 (")
    assert ("): the YAML tag !!python/object/apply:os.system is not allowed: config files hold plain values (numbers, "
            "strings, lists, mappings), read with yaml.safe_load, which creates no Python objects") in str(err.value)
    assert not marker.exists()


def test_python_source_named_yaml_is_a_clear_yaml_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("from yacs.config import CfgNode as CN\n_C = CN()\n_C.SEED = 1\ncfg = _C\n")
    with pytest.raises(ValueError) as err:
        get_cfg_default().merge_from_file(str(path))
    assert str(err.value) == (f"{path}: expected a YAML mapping of config keys (KEY: value lines), got a str; the "
                              "file looks like Python source, but config files are YAML (yacs' Python configs are "
                              "refused)")


def test_an_empty_yaml_file_changes_nothing(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set here\n")
    cfg = get_cfg_default()
    cfg.merge_from_file(str(path))
    assert cfg == get_cfg_default()


# Validation of the merged config (mutual_prompt.run.config_checks)


def merged(*opts: str, trainer: str = "MutualPrompt"):
    import datasets  # noqa: F401  (registers every dataset)
    import trainers

    cfg = get_cfg_default()
    trainers.extend_cfg(cfg)
    cfg.merge_from_list(["TRAINER.NAME", trainer, "DATASET.NAME", "ToyShapes", *opts])
    return cfg


def problems(*opts: str, trainer: str = "MutualPrompt", training: bool = True):
    from mutual_prompt.run.config_checks import config_problems

    return config_problems(merged(*opts, trainer=trainer), training)


def test_the_default_configs_of_both_trainers_are_valid():
    assert problems() == []
    assert problems(trainer="ZeroshotMP") == []


@pytest.mark.parametrize("key, value, message", [
    ("TEST.FINAL_MODEL", "best", "TEST.FINAL_MODEL must be one of last_step, best_val, got 'best'"),
    ("TEST.SPLIT", "tset", "TEST.SPLIT must be one of val, test, got 'tset'"),
    ("OPTIM.NAME", "adan", "OPTIM.NAME must be one of adam, amsgrad, sgd, rmsprop, radam, adamw, got 'adan'"),
    ("OPTIM.LR_SCHEDULER", "cosin", "OPTIM.LR_SCHEDULER must be one of cosine, single_step, multi_step, got 'cosin'"),
    ("INPUT.INTERPOLATION", "bicubc", "INPUT.INTERPOLATION must be one of bilinear, bicubic, nearest, got 'bicubc'"),
    ("DATASET.SUBSAMPLE_CLASSES", "bas", "DATASET.SUBSAMPLE_CLASSES must be one of all, base, new, got 'bas'"),
    ("TRAINER.MUTUAL_PROMPT.PREC", "half",
     "TRAINER.MUTUAL_PROMPT.PREC must be one of fp16, fp32, amp, bf16, got 'half'"),
    ("TRAINER.MUTUAL_PROMPT.FTP.MODE", "fin",
     "TRAINER.MUTUAL_PROMPT.FTP.MODE must be one of fine, shared, none, got 'fin'"),
    ("TRAINER.MUTUAL_PROMPT.CLASS_TOKEN_POSITION", "middle",
     "TRAINER.MUTUAL_PROMPT.CLASS_TOKEN_POSITION must be one of end, got 'middle' (the per-image context is shared "
     "across classes only when it precedes the class name)"),
    ("OPTIM.MAX_EPOCH", "0", "OPTIM.MAX_EPOCH must be >= 1, got 0"),
    ("OPTIM.LR", "0.0", "OPTIM.LR must be > 0, got 0.0"),
    ("DATALOADER.TRAIN_X.BATCH_SIZE", "0", "DATALOADER.TRAIN_X.BATCH_SIZE must be >= 1, got 0"),
    ("DATALOADER.TEST.BATCH_SIZE", "-1", "DATALOADER.TEST.BATCH_SIZE must be >= 1, got -1"),
    ("DATASET.NUM_SHOTS", "-2", "DATASET.NUM_SHOTS must be >= -1, got -2"),
    ("TRAIN.PRINT_FREQ", "0", "TRAIN.PRINT_FREQ must be >= 1, got 0"),
    ("TRAIN.CHECKPOINT_FREQ", "-1", "TRAIN.CHECKPOINT_FREQ must be >= 0, got -1"),
    ("TRAINER.MUTUAL_PROMPT.N_CTX", "0", "TRAINER.MUTUAL_PROMPT.N_CTX must be >= 1, got 0"),
    ("TRAINER.MUTUAL_PROMPT.TVP.TEMP", "0.0", "TRAINER.MUTUAL_PROMPT.TVP.TEMP must be > 0, got 0.0"),
    ("TRAINER.MUTUAL_PROMPT.TVP.TOPK", "0", "TRAINER.MUTUAL_PROMPT.TVP.TOPK must be >= 1, got 0"),
    ("TRAINER.MUTUAL_PROMPT.TVP.N_TOKENS", "0", "TRAINER.MUTUAL_PROMPT.TVP.N_TOKENS must be >= 1, got 0"),
    ("TRAINER.MUTUAL_PROMPT.TVP.DEPTH", "0", "TRAINER.MUTUAL_PROMPT.TVP.DEPTH must be >= 1, got 0"),
    ("TRAINER.MUTUAL_PROMPT.TEXT_CHUNK", "-1", "TRAINER.MUTUAL_PROMPT.TEXT_CHUNK must be >= 0, got -1"),
    ("INPUT.SIZE", "(0, 224)", "INPUT.SIZE must be two positive integers (height, width), got (0, 224)"),
    ("INPUT.SIZE", "(224,)", "INPUT.SIZE must be two positive integers (height, width), got (224,)"),
])
def test_a_value_out_of_its_key_s_values_or_range_is_named(key, value, message):
    assert problems(key, value) == [message]


def test_only_training_reads_the_optim_keys_and_only_the_trainer_s_own_block_is_read():
    assert problems("OPTIM.MAX_EPOCH", "0", training=False) == []
    assert problems("TRAINER.MUTUAL_PROMPT.PREC", "half", trainer="ZeroshotMP") == []
    assert problems("TRAINER.ZEROSHOT_MP.PREC", "half", trainer="ZeroshotMP") == [
        "TRAINER.ZEROSHOT_MP.PREC must be one of fp16, fp32, amp, bf16, got 'half'"]
    assert problems("TRAINER.ZEROSHOT_MP.TEMPLATE", "a photo", trainer="ZeroshotMP") == [
        "TRAINER.ZEROSHOT_MP.TEMPLATE must contain exactly one '{}' for the class name, got 'a photo'"]
    assert problems("TRAINER.ZEROSHOT_MP.TEMPLATE", "a photo") == []
    assert problems("TRAINER.MUTUAL_PROMPT.TVP.TOPK", "0", "TRAINER.MUTUAL_PROMPT.TVP.ENABLED", "False") == []
    assert problems("OPTIM.WARMUP_TYPE", "linaer") == []  # no warm-up: the type is not read
    assert problems("OPTIM.WARMUP_TYPE", "linaer", "OPTIM.WARMUP_EPOCH", "1") == [
        "OPTIM.WARMUP_TYPE must be one of constant, linear, got 'linaer'"]


def test_a_trainer_checks_its_own_block_whatever_trainer_name_says():
    from mutual_prompt.run.config_checks import config_problems

    cfg = merged("TRAINER.MUTUAL_PROMPT.PREC", "half", trainer="")
    assert config_problems(cfg, trainer="MutualPrompt") == [
        "TRAINER.MUTUAL_PROMPT.PREC must be one of fp16, fp32, amp, bf16, got 'half'"]


def test_every_problem_is_named_in_one_error():
    from mutual_prompt.run.config_checks import ConfigError, validate_cfg

    with pytest.raises(ConfigError) as err:
        validate_cfg(merged("TEST.FINAL_MODEL", "best", "OPTIM.MAX_EPOCH", "0"))
    assert str(err.value) == ("TEST.FINAL_MODEL must be one of last_step, best_val, got 'best'; "
                              "OPTIM.MAX_EPOCH must be >= 1, got 0")


def counted_lookups(monkeypatch) -> list:
    """The keys ``config_checks`` looks up from now on (every check looks its key up)."""
    from mutual_prompt.run import config_checks

    keys = []
    lookup = config_checks.lookup

    def counting(cfg, key):
        keys.append(key)
        return lookup(cfg, key)

    monkeypatch.setattr(config_checks, "lookup", counting)
    return keys


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval-only"])
def test_the_trainer_does_not_check_again_what_train_py_checked(monkeypatch, training):
    from mutual_prompt.backend import TRAINER_REGISTRY
    from mutual_prompt.run import config_checks
    from mutual_prompt.run.config_checks import validate_cfg

    monkeypatch.setattr(config_checks, "PASSED", config_checks.PassedChecks())  # a fresh process
    cfg = merged("OPTIM.MAX_EPOCH", "3")
    cfg.freeze()
    validate_cfg(cfg, training)  # train.py, right after the merge
    keys = counted_lookups(monkeypatch)
    trainer = TRAINER_REGISTRY.get("MutualPrompt")
    trainer.check_cfg(object.__new__(trainer), cfg)  # the trainer, when it is built
    if training:
        assert keys == []
    else:  # only the OPTIM keys, which an --eval-only run of train.py does not check
        assert keys and all(key.startswith("OPTIM.") for key in keys)
    keys.clear()
    trainer.check_cfg(object.__new__(trainer), cfg)
    assert keys == []


def test_a_changed_config_is_checked_again_in_full(monkeypatch):
    from mutual_prompt.run.config_checks import ConfigError, validate_cfg

    cfg = merged()
    validate_cfg(cfg)
    cfg.merge_from_list(["TRAINER.MUTUAL_PROMPT.TVP.TOPK", "0"])
    with pytest.raises(ConfigError, match="TRAINER.MUTUAL_PROMPT.TVP.TOPK must be >= 1, got 0"):
        validate_cfg(cfg, trainer="MutualPrompt")
    keys = counted_lookups(monkeypatch)
    other = merged("SEED", "7")
    validate_cfg(other)
    assert "TEST.FINAL_MODEL" in keys and "TRAINER.MUTUAL_PROMPT.PREC" in keys


def test_unregistered_trainer_and_dataset_names_list_the_registered_ones():
    found = problems(trainer="CoOp")
    assert len(found) == 1 and found[0].startswith("TRAINER.NAME (--trainer): unknown trainer 'CoOp'; valid trainers: ")
    assert "MutualPrompt" in found[0] and "ZeroshotMP" in found[0]  # and any a test module registered
    found = problems(trainer="MutualPromt")
    assert found[0].startswith("TRAINER.NAME (--trainer): unknown trainer 'MutualPromt' (did you mean 'MutualPrompt'?); ")
    found = problems("DATASET.NAME", "Caltech")
    assert len(found) == 1 and found[0].startswith("DATASET.NAME (--dataset-config-file): unknown dataset 'Caltech' "
                                                   "(did you mean 'Caltech101'?); valid datasets: ")
    assert problems(trainer="")[0].startswith("TRAINER.NAME is empty; set it (--trainer) to one of the registered")


def test_the_engine_implements_every_optimizer_and_interpolation_the_checks_accept():
    import torch

    from mutual_prompt.run.config_checks import INTERPOLATIONS, OPTIMIZERS
    from mutual_prompt.runtime.data.transforms import INTERPOLATION_MODES
    from mutual_prompt.runtime.optim import OPTIMIZERS as ENGINE_OPTIMIZERS
    from mutual_prompt.runtime.optim import build_optimizer

    assert set(OPTIMIZERS) == set(ENGINE_OPTIMIZERS) and set(INTERPOLATIONS) == set(INTERPOLATION_MODES)
    cfg = get_cfg_default()
    cfg.OPTIM.NAME = "amsgrad"
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.OPTIM)
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["amsgrad"]


# One default per key


def leaves(node, prefix: str = "") -> dict:
    """``{dotted key: value}`` of every leaf under ``node``."""
    found = {}
    for key, value in node.items():
        if hasattr(value, "items"):
            found.update(leaves(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = value
    return found


def documented_defaults() -> dict:
    """The key -> default table of docs/METHOD.md's "Config keys" section, each default read as YAML."""
    with open(os.path.join(REPO_ROOT, "docs", "METHOD.md"), encoding="utf-8") as f:
        section = f.read().split("\n## Config keys\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z_.]+)` \| ([^|]+?) \|", section, re.MULTILINE)
    return {key: yaml.safe_load(default.strip("`")) for key, default in rows}


def test_every_mutual_prompt_key_has_the_documented_default():
    import trainers

    cfg = get_cfg_default()
    trainers.extend_cfg(cfg)
    assert leaves(cfg.TRAINER.MUTUAL_PROMPT) == documented_defaults()
    assert cfg.TRAINER.MUTUAL_PROMPT.TEXT_CHUNK == 2000


@pytest.mark.parametrize("module", ["MutualPromptCLIP", "TextReorganizedVisualPrompt", "FineGrainedTextPrompt"])
def test_the_method_modules_take_every_config_value_without_a_default_of_their_own(module):
    import mutual_prompt.method

    parameters = inspect.signature(getattr(mutual_prompt.method, module).__init__).parameters
    assert [name for name, p in parameters.items() if p.default is not inspect.Parameter.empty] == []


def assignments(key: str) -> Dict[str, int]:
    """How many times each Python file of the package, the trainers, the datasets and train.py assigns
    ``<node>.<key>``, for the files that do."""
    pattern = re.compile(rf"\.{re.escape(key)}\s*=(?!=)")
    found = {}
    for folder in ("mutual_prompt", "trainers", "datasets", "train.py"):
        path = os.path.join(REPO_ROOT, folder)
        files = [path] if os.path.isfile(path) else [
            os.path.join(d, f) for d, _, names in os.walk(path) for f in names if f.endswith(".py")]
        for file in files:
            with open(file, encoding="utf-8") as f:
                count = len(pattern.findall(f.read()))
            if count:
                found[os.path.relpath(file, REPO_ROOT)] = count
    return found


def test_each_key_s_default_is_written_in_one_place():
    import trainers
    from mutual_prompt.run.config import KEYS_DASSL_LACKS

    cfg = get_cfg_default()
    trainers.extend_cfg(cfg)
    homes = {"MUTUAL_PROMPT": "trainers/mutual_prompt.py", "ZEROSHOT_MP": "trainers/zeroshot_mp.py",
             "LINEAR_PROBE_MP": "trainers/linear_probe_mp.py"}
    for block, home in homes.items():
        for key in leaves(cfg.TRAINER[block]):
            # once in the trainer's extend_cfg; a key of the same name in another block (PREC) in its trainer's
            same_name = {homes[other] for other in homes if other != block and key in leaves(cfg.TRAINER[other])}
            found = assignments(key)
            assert found.get(home) == 1 and set(found) - {home} <= same_name, (block, key, found)
    names = [key for _, key, _ in KEYS_DASSL_LACKS]
    assert len(names) == len(set(names))
    for parents, key, default in KEYS_DASSL_LACKS:  # written only in KEYS_DASSL_LACKS
        dotted = ".".join(parents + (key,))
        assert assignments(dotted) == {} and leaves(cfg)[dotted] == default, dotted


def test_has_key_follows_dotted_keys_and_stops_at_a_value():
    from yacs.config import CfgNode as CN

    from mutual_prompt.run.config_checks import has_key

    cfg = CN({"TRAINER": CN({"MUTUAL_PROMPT": CN({"N_CTX": 4})})})
    assert has_key(cfg, "TRAINER.MUTUAL_PROMPT.N_CTX") and has_key(cfg, "TRAINER")
    assert not has_key(cfg, "TRAINER.COOP.N_CTX") and not has_key(cfg, "TRAINER.MUTUAL_PROMPT.N_CTX.X")
