"""The built-in config (defaults, merging, errors that name the key and the file) and registries."""
import pytest

from mutual_prompt.config import Config
from mutual_prompt.engine.config import get_cfg_default
from mutual_prompt.engine.registry import Registry


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
    from mutual_prompt.engine import get_cfg_default

    marker = tmp_path / "executed"
    config = tmp_path / "evil.py"
    config.write_text(f"open({str(marker)!r}, 'w').write('ran')\nfrom yacs.config import CfgNode\ncfg = CfgNode()\n")
    with pytest.raises(ValueError, match=r"evil\.py: only YAML config files \(\.yaml or \.yml\) are accepted"):
        get_cfg_default().merge_from_file(str(config))
    assert not marker.exists()


def test_a_config_file_with_another_extension_is_refused(tmp_path):
    from mutual_prompt.engine import get_cfg_default

    config = tmp_path / "config.txt"
    config.write_text("SEED: 3\n")
    with pytest.raises(ValueError, match=r"config\.txt: only YAML config files"):
        get_cfg_default().merge_from_file(str(config))
    yml = tmp_path / "config.yml"
    yml.write_text("SEED: 3\n")
    cfg = get_cfg_default()
    cfg.merge_from_file(str(yml))
    assert cfg.SEED == 3
