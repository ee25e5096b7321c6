"""The default configuration (``get_cfg_default``) of the built-in runtime, and ``check_supported``.

The tree holds the keys of Dassl 0.6.3's defaults that CoOp, CoCoOp, MaPLe and PromptSRC set in their
configs and train.py or read in their trainers, and those the runtime itself reads, with Dassl's
defaults. The rest of Dassl's defaults (``DASSL_KEYS_LEFT_OUT``) belong to features the runtime does
not implement: merging one is an error that says so.
"""
from ..run.config import Config, add_keys_dassl_lacks
from .data.samplers import check_sampler_name
from .data.transforms import check_transform_names

INSTALL_DASSL = "install Dassl.pytorch (https://github.com/KaiyangZhou/Dassl.pytorch) to use it"

_C = Config()
_C.OUTPUT_DIR = "./output"
_C.RESUME = ""
_C.SEED = -1
_C.USE_CUDA = True
_C.VERBOSE = True

_C.INPUT = Config()
_C.INPUT.SIZE = (224, 224)
_C.INPUT.INTERPOLATION = "bilinear"
_C.INPUT.TRANSFORMS = ()
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)

_C.DATASET = Config()
_C.DATASET.ROOT = ""
_C.DATASET.NAME = ""
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_SHOTS = -1

_C.DATALOADER = Config()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.TRAIN_X = Config()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TEST = Config()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

_C.MODEL = Config()
_C.MODEL.INIT_WEIGHTS = ""
_C.MODEL.BACKBONE = Config()
_C.MODEL.BACKBONE.NAME = ""
_C.MODEL.HEAD = Config()
_C.MODEL.HEAD.NAME = ""  # train.py's --head; the runtime builds no head (check_supported)

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

_C.TEST = Config()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False
_C.TEST.NO_TEST = False
_C.TEST.SPLIT = "test"
_C.TEST.FINAL_MODEL = "last_step"

_C.TRAINER = Config()
_C.TRAINER.NAME = ""

# Keys of Dassl's defaults for features the runtime does not implement (a node stands for its keys):
# Dassl's other augmentations, the unlabelled loader, K augmented views, the unaugmented img0,
# domain and class sampling, the MLP head, staged learning rates, semi-supervised datasets.
DASSL_KEYS_LEFT_OUT = (
    "VERSION",
    "INPUT.NO_TRANSFORM", "INPUT.CROP_PADDING", "INPUT.CUTOUT_N", "INPUT.CUTOUT_LEN", "INPUT.GN_MEAN",
    "INPUT.GN_STD", "INPUT.RANDAUGMENT_N", "INPUT.RANDAUGMENT_M", "INPUT.COLORJITTER_B", "INPUT.COLORJITTER_C",
    "INPUT.COLORJITTER_S", "INPUT.COLORJITTER_H", "INPUT.RGS_P", "INPUT.GB_P", "INPUT.GB_K",
    "DATASET.NUM_LABELED", "DATASET.VAL_PERCENT", "DATASET.STL10_FOLD", "DATASET.CIFAR_C_TYPE",
    "DATASET.CIFAR_C_LEVEL", "DATASET.ALL_AS_UNLABELED",
    "DATALOADER.K_TRANSFORMS", "DATALOADER.RETURN_IMG0", "DATALOADER.TRAIN_X.N_DOMAIN", "DATALOADER.TRAIN_X.N_INS",
    "DATALOADER.TRAIN_U",
    "MODEL.BACKBONE.PRETRAINED", "MODEL.HEAD.HIDDEN_LAYERS", "MODEL.HEAD.ACTIVATION", "MODEL.HEAD.BN",
    "MODEL.HEAD.DROPOUT",
    "OPTIM.STAGED_LR", "OPTIM.NEW_LAYERS", "OPTIM.BASE_LR_MULT",
    "TRAIN.COUNT_ITER",
)
_C.leave_out(DASSL_KEYS_LEFT_OUT, f"a key of Dassl's defaults for a feature the built-in runtime does not implement; "
                                  f"{INSTALL_DASSL}")
add_keys_dassl_lacks(_C)


def get_cfg_default() -> Config:
    """A fresh, mutable copy of the defaults."""
    return _C.clone()


def check_supported(cfg) -> None:
    """Raise ``ValueError`` naming the key and its value where ``cfg`` asks for a Dassl feature that the
    built-in runtime does not implement: a transform or sampler other than its own, or a head."""
    check_transform_names(cfg.INPUT.TRANSFORMS)
    check_sampler_name(cfg.DATALOADER.TRAIN_X.SAMPLER, "DATALOADER.TRAIN_X.SAMPLER")
    check_sampler_name(cfg.DATALOADER.TEST.SAMPLER, "DATALOADER.TEST.SAMPLER")
    if cfg.MODEL.HEAD.NAME:
        raise ValueError(f"MODEL.HEAD.NAME {cfg.MODEL.HEAD.NAME!r}: the built-in runtime builds no head (Dassl's "
                         f"SimpleNet); {INSTALL_DASSL}, or leave MODEL.HEAD.NAME empty (no --head)")
