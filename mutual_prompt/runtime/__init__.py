"""Built-in runtime with Dassl's interface, used when Dassl does not import (see ``mutual_prompt.backend``)."""
from ..run.checkpoints import load_checkpoint, load_pretrained_weights, save_checkpoint
from .config import get_cfg_default
from .data.data_manager import DataManager
from .data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
from .logger import setup_logger
from .metrics import compute_accuracy
from .optim import build_optimizer
from .registry import Registry
from .trainer import TRAINER_REGISTRY, SimpleTrainer, TrainerBase, TrainerX, build_trainer
from .utils import collect_env_info, set_random_seed
