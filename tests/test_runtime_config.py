"""The built-in runtime's default tree against the CoOp-family hosts (CoOp and CoCoOp, MaPLe, PromptSRC).

Their config files, the keys their train.py sets and the keys their trainers read merge into the tree
and are there; a Dassl feature the runtime does not implement is an error that names the key. The
YAML below holds the keys and values the hosts' files set, written out here (their files are not
copied into this repository).
"""
import pytest
import torch
from yacs.config import CfgNode

from mutual_prompt.run.lr_schedulers import build_lr_scheduler
from mutual_prompt.runtime.config import DASSL_KEYS_LEFT_OUT, check_supported, get_cfg_default
from mutual_prompt.runtime.data.samplers import DASSL_ONLY_SAMPLERS
from mutual_prompt.runtime.data.transforms import DASSL_ONLY_TRANSFORMS
from mutual_prompt.runtime.optim import build_optimizer

# The trainer nodes each host's train.py (extend_cfg) adds, with their defaults.
COOP_NODES = {
    "COOP": {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16", "CLASS_TOKEN_POSITION": "end"},
    "COCOOP": {"N_CTX": 16, "CTX_INIT": "", "PREC": "fp16"},
}
MAPLE_NODE = {"MAPLE": {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "PROMPT_DEPTH": 9}}
IVLP_NODE = {"IVLP": {"N_CTX_VISION": 2, "N_CTX_TEXT": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
                      "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9}}
MAPLE_REPO_NODES = {**COOP_NODES, **MAPLE_NODE, **IVLP_NODE,
                    "VPT": {"N_CTX_VISION": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "PROMPT_DEPTH_VISION": 1}}
PROMPTSRC_REPO_NODES = {**COOP_NODES, **MAPLE_NODE, **IVLP_NODE,
                        "PROMPTSRC": {"N_CTX_VISION": 4, "N_CTX_TEXT": 4, "CTX_INIT": "a photo of a", "PREC": "fp16",
                                      "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9, "TEXT_LOSS_WEIGHT": 25,
                                      "IMAGE_LOSS_WEIGHT": 10, "GPA_MEAN": 15, "GPA_STD": 1}}


def trainer_file(batch: int, lr: float, epochs: int, print_freq: int, backbone: str, trainer_block: str = "") -> str:
    """A host's configs/trainers/<Trainer>/<cfg>.yaml: the blocks every one of them sets, then its trainer's."""
    return f"""DATALOADER:
  TRAIN_X:
    BATCH_SIZE: {batch}
  TEST:
    BATCH_SIZE: 100
  NUM_WORKERS: 8
INPUT:
  SIZE: (224, 224)
  INTERPOLATION: "bicubic"
  PIXEL_MEAN: [0.48145466, 0.4578275, 0.40821073]
  PIXEL_STD: [0.26862954, 0.26130258, 0.27577711]
  TRANSFORMS: ["random_resized_crop", "random_flip", "normalize"]
OPTIM:
  NAME: "sgd"
  LR: {lr}
  MAX_EPOCH: {epochs}
  LR_SCHEDULER: "cosine"
  WARMUP_EPOCH: 1
  WARMUP_TYPE: "constant"
  WARMUP_CONS_LR: 1e-5
TRAIN:
  PRINT_FREQ: {print_freq}
MODEL:
  BACKBONE:
    NAME: "{backbone}"
{trainer_block}"""


HOSTS = {
    "CoOp rn50": (COOP_NODES, trainer_file(32, 0.002, 200, 5, "RN50"), "CoOp",
                  ["TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end",
                   "DATASET.NUM_SHOTS", "16"]),
    "CoOp vit_b16_ep50_ctxv1": (COOP_NODES, trainer_file(32, 0.002, 50, 5, "ViT-B/16",
                                                         'TRAINER:\n  COOP:\n    CTX_INIT: "a photo of a"\n'),
                                "CoOp", ["DATASET.NUM_SHOTS", "16"]),
    "CoCoOp vit_b16_c4_ep10_batch1_ctxv1": (
        COOP_NODES,
        trainer_file(1, 0.002, 10, 20, "ViT-B/16",
                     'TRAINER:\n  COCOOP:\n    N_CTX: 4\n    CTX_INIT: "a photo of a"\n    PREC: "fp16"\n'),
        "CoCoOp", ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]),
    "MaPLe vit_b16_c2_ep5_batch4_2ctx": (
        MAPLE_REPO_NODES,
        trainer_file(4, 0.0035, 5, 20, "ViT-B/16", 'TRAINER:\n  MAPLE:\n    N_CTX: 2\n    CTX_INIT: "a photo of a"\n'
                                                   '    PREC: "fp16"\n    PROMPT_DEPTH: 9\n'),
        "MaPLe", ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new"]),
    "IVLP vit_b16_c2_ep5_batch4_2+2ctx": (
        MAPLE_REPO_NODES,
        trainer_file(4, 0.0035, 5, 20, "ViT-B/16", 'TRAINER:\n  IVLP:\n    N_CTX_VISION: 2\n    N_CTX_TEXT: 2\n'
                                                   '    CTX_INIT: "a photo of a"\n    PREC: "fp16"\n'
                                                   '    PROMPT_DEPTH_VISION: 12\n    PROMPT_DEPTH_TEXT: 12\n'),
        "IVLP", ["DATASET.NUM_SHOTS", "16"]),
    "VPT vit_b16_c2_ep5_batch4_4": (
        MAPLE_REPO_NODES,
        trainer_file(4, 0.0025, 5, 20, "ViT-B/16", 'TRAINER:\n  VPT:\n    N_CTX_VISION: 8\n    CTX_INIT: "a photo of a"\n'
                                                   '    PREC: "fp16"\n    PROMPT_DEPTH_VISION: 12\n'),
        "VPT", ["DATASET.NUM_SHOTS", "16"]),
    "PromptSRC vit_b16_c2_ep20_batch4_4+4ctx": (
        PROMPTSRC_REPO_NODES,
        trainer_file(4, 0.0025, 20, 20, "ViT-B/16",
                     'TRAINER:\n  PROMPTSRC:\n    N_CTX_VISION: 4\n    N_CTX_TEXT: 4\n    CTX_INIT: "a photo of a"\n'
                     '    PREC: "fp16"\n    PROMPT_DEPTH_VISION: 9\n    PROMPT_DEPTH_TEXT: 9\n'
                     '    TEXT_LOSS_WEIGHT: 25\n    IMAGE_LOSS_WEIGHT: 10\n    GPA_MEAN: 15\n    GPA_STD: 1\n'),
        "PromptSRC", ["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]),
}
# The keys the hosts' train.py (reset_cfg) assigns from its flags; an assignment to a key the tree
# lacks would add it silently, so each must be in the tree.
RESET_CFG = {
    "DATASET.ROOT": "/data", "OUTPUT_DIR": "output/run", "RESUME": "", "SEED": 1, "DATASET.SOURCE_DOMAINS": ["a"],
    "DATASET.TARGET_DOMAINS": ["b"], "INPUT.TRANSFORMS": ["random_resized_crop", "random_flip", "normalize"],
    "MODEL.BACKBONE.NAME": "ViT-B/16", "MODEL.HEAD.NAME": "",
}
# The keys the hosts' trainers and datasets read besides their own TRAINER.<NAME> node, and train.py's.
READ_BY_HOSTS = ("DATASET.NAME", "DATASET.ROOT", "DATASET.NUM_SHOTS", "DATASET.SUBSAMPLE_CLASSES", "INPUT.SIZE",
                 "MODEL.BACKBONE.NAME", "MODEL.INIT_WEIGHTS", "OPTIM.MAX_EPOCH", "SEED", "USE_CUDA", "OUTPUT_DIR")


def lookup(cfg, key: str):
    node = cfg
    for name in key.split("."):
        assert name in node, f"{key} is not in the built-in runtime's default tree"
        node = node[name]
    return node


def assign(cfg, key: str, value) -> None:
    *parents, last = key.split(".")
    node = lookup(cfg, ".".join(parents)) if parents else cfg
    assert last in node, f"{key} is not in the built-in runtime's default tree"
    node[last] = value


@pytest.mark.parametrize("host", list(HOSTS))
def test_a_host_s_config_files_flags_and_script_overrides_merge(tmp_path, host):
    nodes, trainer_yaml, trainer_name, opts = HOSTS[host]
    cfg = get_cfg_default()
    for name, keys in nodes.items():  # extend_cfg, in CoOp's style: plain yacs nodes
        cfg.TRAINER[name] = CfgNode(keys)
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"
    (tmp_path / "dataset.yaml").write_text('DATASET:\n  NAME: "ImageNet"\n')
    (tmp_path / "trainer.yaml").write_text(trainer_yaml)
    cfg.merge_from_file(str(tmp_path / "dataset.yaml"))
    cfg.merge_from_file(str(tmp_path / "trainer.yaml"))
    for key, value in {**RESET_CFG, "TRAINER.NAME": trainer_name}.items():
        assign(cfg, key, value)
    cfg.merge_from_list(opts)
    cfg.freeze()

    for key in READ_BY_HOSTS:
        lookup(cfg, key)
    assert cfg.DATASET.NAME == "ImageNet" and tuple(cfg.INPUT.SIZE) == (224, 224)
    assert cfg.OPTIM.NAME == "sgd" and cfg.OPTIM.WARMUP_CONS_LR == 1e-5
    check_supported(cfg)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg.OPTIM)
    scheduler = build_lr_scheduler(optimizer, cfg.OPTIM)
    assert optimizer.param_groups[0]["lr"] == 1e-5  # the constant warm-up epoch
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == cfg.OPTIM.LR


@pytest.mark.parametrize("key, value, message", [
    *[("INPUT.TRANSFORMS", ("random_flip", name), f"INPUT.TRANSFORMS: '{name}' is a Dassl transform that the built-in "
       "runtime does not implement; install Dassl.pytorch") for name in DASSL_ONLY_TRANSFORMS],
    *[(key, name, f"{key} '{name}' is not implemented by the built-in runtime (Dassl's; install Dassl.pytorch")
      for key in ("DATALOADER.TRAIN_X.SAMPLER", "DATALOADER.TEST.SAMPLER") for name in DASSL_ONLY_SAMPLERS],
    ("MODEL.HEAD.NAME", "mlp", "MODEL.HEAD.NAME 'mlp': the built-in runtime builds no head (Dassl's SimpleNet); "
                               "install Dassl.pytorch"),
])
def test_a_kept_key_asking_for_a_feature_the_runtime_lacks_is_named(key, value, message):
    cfg = get_cfg_default()
    assign(cfg, key, value)
    with pytest.raises(ValueError) as err:
        check_supported(cfg)
    assert str(err.value).startswith(message)


def test_the_defaults_ask_for_nothing_the_runtime_lacks():
    check_supported(get_cfg_default())


def _left_out_key(key: str) -> str:
    """``key``, or a key under it where it names a node of Dassl's defaults."""
    return key + ".SAME_AS_X" if key == "DATALOADER.TRAIN_U" else key


@pytest.mark.parametrize("key", DASSL_KEYS_LEFT_OUT)
def test_a_dassl_key_the_runtime_leaves_out_is_named_from_the_command_line_and_a_file(tmp_path, key):
    key = _left_out_key(key)
    with pytest.raises(KeyError) as err:
        get_cfg_default().merge_from_list([key, "1"])
    assert (f"command-line overrides: config key '{key}' is a key of Dassl's defaults for a feature the built-in "
            "runtime does not implement; install Dassl.pytorch") in str(err.value)
    *parents, last = key.split(".")
    text = "".join(f"{'  ' * depth}{name}:\n" for depth, name in enumerate(parents)) + f"{'  ' * len(parents)}{last}: 1\n"
    path = tmp_path / "dassl.yaml"
    path.write_text(text)
    with pytest.raises(KeyError) as err:
        get_cfg_default().merge_from_file(str(path))
    reported = key if key in DASSL_KEYS_LEFT_OUT else key.rsplit(".", 1)[0]  # a node missing from the tree
    assert f"{path}: config key '{reported}' is a key of Dassl's defaults" in str(err.value)


def test_the_left_out_keys_are_not_in_the_tree_and_a_misspelt_key_is_still_unknown():
    cfg = get_cfg_default()
    for key in DASSL_KEYS_LEFT_OUT:
        *parents, last = key.split(".")
        node = cfg
        for name in parents:
            node = node[name]
        assert last not in node, key
    with pytest.raises(KeyError, match="unknown config key 'OPTIM.STAGED_LRS'"):
        cfg.merge_from_list(["OPTIM.STAGED_LRS", "True"])
