"""Default configuration with Dassl's keys, and merging that names the bad key and its source."""
from typing import List

from yacs.config import CfgNode


YAML_EXTENSIONS = (".yaml", ".yml")


class Config(CfgNode):
    """A yacs ``CfgNode`` whose merge errors say which key, which file and what was expected."""

    def merge_from_file(self, cfg_filename: str) -> None:
        """Merge a YAML file. yacs would also import and run a ``.py`` config: that is refused."""
        if not str(cfg_filename).lower().endswith(YAML_EXTENSIONS):
            raise ValueError(
                f"{cfg_filename}: only YAML config files (.yaml or .yml) are accepted; a Python config file would "
                "be executed by yacs when loaded"
            )
        try:
            super().merge_from_file(cfg_filename)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"Config file not found: {cfg_filename}") from e
        except (KeyError, ValueError, AssertionError) as e:
            error = KeyError if _is_unknown_key(e) else type(e)
            raise error(f"{cfg_filename}: {_reason(e)}") from e

    def merge_from_other_cfg(self, cfg_other: CfgNode) -> None:
        if not self.is_frozen():
            _make_nodes_config(self)
        super().merge_from_other_cfg(cfg_other)

    def merge_from_list(self, cfg_list: List[str]) -> None:
        if len(cfg_list) % 2 != 0:
            raise ValueError(
                f"Command-line overrides must be KEY VALUE pairs; got an odd number of items: {cfg_list}"
            )
        try:
            super().merge_from_list(cfg_list)
        except (KeyError, ValueError, AssertionError) as e:
            error = KeyError if _is_unknown_key(e) else type(e)
            raise error(f"command-line overrides: {_reason(e)}") from e


def _make_nodes_config(node: CfgNode) -> None:
    """Turn plain yacs sub-nodes into ``Config`` in place.

    yacs decodes a file's node as its parent's class and merges it only into a node of exactly that
    class, so a block that a trainer's ``extend_cfg`` added as a plain ``CfgNode`` (CoOp's style)
    could not be set from a config file.
    """
    for key, value in node.items():
        if isinstance(value, CfgNode):
            if not isinstance(value, Config):
                converted = Config(new_allowed=value.is_new_allowed())
                converted.update(value)
                node[key] = value = converted
            _make_nodes_config(value)


_UNKNOWN_KEY_PREFIXES = ("Non-existent config key", "Non-existent key")


def _message(e: Exception) -> str:
    return str(e.args[0]) if e.args else str(e)


def _is_unknown_key(e: Exception) -> bool:
    """yacs reports an unknown key as a KeyError from a file and an AssertionError from a list."""
    return _message(e).startswith(_UNKNOWN_KEY_PREFIXES)


def _reason(e: Exception) -> str:
    msg = _message(e)
    if _is_unknown_key(e):
        key = msg.split(":", 1)[1].strip()
        return f"unknown config key '{key}' (check its spelling, or that the trainer's extend_cfg added it)"
    return str(msg)


_C = Config()
_C.VERSION = 1
_C.OUTPUT_DIR = "./output"
_C.RESUME = ""
_C.SEED = -1
_C.USE_CUDA = True
_C.VERBOSE = True

_C.INPUT = Config()
_C.INPUT.SIZE = (224, 224)
_C.INPUT.INTERPOLATION = "bilinear"
_C.INPUT.TRANSFORMS = ()
_C.INPUT.NO_TRANSFORM = False
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2
_C.INPUT.GB_P = 0.5
_C.INPUT.GB_K = 21

_C.DATASET = Config()
_C.DATASET.ROOT = ""
_C.DATASET.NAME = ""
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_LABELED = -1
_C.DATASET.NUM_SHOTS = -1
_C.DATASET.VAL_PERCENT = 0.1
_C.DATASET.ALL_AS_UNLABELED = False
# CoOp's key: "all", "base" (first half of the labels) or "new" (the rest, relabelled from 0).
_C.DATASET.SUBSAMPLE_CLASSES = "all"

_C.DATALOADER = Config()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.K_TRANSFORMS = 1
_C.DATALOADER.RETURN_IMG0 = False
_C.DATALOADER.TRAIN_X = Config()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
_C.DATALOADER.TRAIN_X.N_INS = 16
_C.DATALOADER.TRAIN_U = Config()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
_C.DATALOADER.TEST = Config()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

_C.MODEL = Config()
_C.MODEL.INIT_WEIGHTS = ""
_C.MODEL.BACKBONE = Config()
_C.MODEL.BACKBONE.NAME = ""
_C.MODEL.BACKBONE.PRETRAINED = True
# A local CLIP weights file (OpenAI JIT archive or state dict); overrides the download by NAME.
_C.MODEL.BACKBONE.PATH = ""
_C.MODEL.HEAD = Config()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

_C.OPTIM = Config()
_C.OPTIM.NAME = "adam"
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
_C.OPTIM.STAGED_LR = False
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"
_C.OPTIM.STEPSIZE = (-1,)
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1
_C.OPTIM.WARMUP_TYPE = "linear"
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5
_C.OPTIM.WARMUP_RECOUNT = True

_C.TRAIN = Config()
_C.TRAIN.CHECKPOINT_FREQ = 0
_C.TRAIN.PRINT_FREQ = 10
_C.TRAIN.COUNT_ITER = "train_x"

_C.TEST = Config()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False
_C.TEST.NO_TEST = False
_C.TEST.SPLIT = "test"
_C.TEST.FINAL_MODEL = "last_step"

_C.TRAINER = Config()
_C.TRAINER.NAME = ""


def get_cfg_default() -> Config:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()
