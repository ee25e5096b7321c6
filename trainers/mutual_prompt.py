"""MutualPrompt: Mutual Prompt Learning (Long et al., IJCV 2024) as a CoOp-style trainer.

Drop this file into a CoOp-style repository (``trainers/mutual_prompt.py``), ``import
trainers.mutual_prompt`` in its train.py and call ``extend_cfg(cfg)`` from this module inside its
``extend_cfg``; everything else comes from the ``mutual_prompt`` package, under real Dassl or not.
"""
from typing import Any, Dict, Optional

import torch.nn.functional as F
from yacs.config import CfgNode as CN

from mutual_prompt.backend import (
    BACKEND,
    TRAINER_REGISTRY,
    TrainerX,
    build_optimizer,
    compute_accuracy,
)
from mutual_prompt.clip import autocast, grad_scaler, load_frozen_clip, resolve_precision
from mutual_prompt.method import MutualPromptCLIP
from mutual_prompt.run.checkpoints import (
    best_val_so_far,
    config_difference_hint,
    load_pretrained_weights,
    load_trained_models,
    resume_models,
)
from mutual_prompt.run.config import add_keys_dassl_lacks
from mutual_prompt.run.config_checks import validate_backbone_fit, validate_cfg
from mutual_prompt.run.lr_schedulers import build_lr_scheduler
from mutual_prompt.run.machine import start_under_dassl

# Printed before Dassl's "Finish training": MaPLe's and PromptSRC's parse_test_res.py wait for this line
# before they read the accuracy, CoOp's (and ours) for Dassl's.
FINISHED_TRAINING_LINE = "Finished training"
NO_CHECKPOINT_MESSAGE = (
    "MutualPrompt: load_model() was given no directory (--eval-only without --model-dir), so the result "
    "would be the accuracy of untrained prompts. Pass --model-dir <the --output-dir of the training run> "
    "with --load-epoch <N> (the last epoch's model.pth.tar-N) or without it (model-best.pth.tar, written "
    "with TEST.FINAL_MODEL best_val). To evaluate untrained prompts on purpose, use mutual-prompt's own "
    "train.py with --eval-only --no-load (a CoOp-style repository's train.py has no such flag)."
)


def extend_cfg(cfg) -> None:
    """Add ``TRAINER.MUTUAL_PROMPT.*`` (and keys real Dassl lacks) to ``cfg``; idempotent."""
    add_keys_dassl_lacks(cfg)
    if "MUTUAL_PROMPT" in cfg.TRAINER:
        return
    mp = CN()
    mp.N_CTX = 4  # number of context tokens (used when CTX_INIT is empty)
    mp.CTX_INIT = "a photo of a"  # initialise the context from these words ("" = random)
    mp.PREC = "fp16"  # fp16, fp32, amp or bf16 (mutual_prompt/clip/precision.py); fp16 runs as fp32 on the CPU
    mp.CLASS_TOKEN_POSITION = "end"
    mp.FTP = CN()
    mp.FTP.MODE = "fine"  # fine (per-token semantics), shared (CoCoOp's meta-net), none (CoOp)
    mp.TVP = CN()
    mp.TVP.ENABLED = True
    mp.TVP.TOPK = 5  # classes kept for the reorganised text description (capped at C)
    mp.TVP.TEMP = 0.01  # softmax temperature over the kept classes' similarities
    mp.TVP.N_TOKENS = 4  # visual prompt tokens appended to the image sequence
    mp.TVP.DEPTH = 1  # > 1: fresh prompt tokens at the input of each of the first DEPTH layers
    mp.TEXT_CHUNK = 2000  # prompts per text-encoder call (0: all B x C at once); bounds test-time memory
    mp.TEXT_SHARED_PREFIX = True  # encode SOS + context once per image, share it across classes
    mp.TEXT_TRUNCATE = True  # run prompts only up to the longest end-of-text position
    mp.TEXT_CHECKPOINT = False  # activation checkpointing of the text encoder (large C)
    cfg.TRAINER.MUTUAL_PROMPT = mp


def model_arguments(cfg) -> Dict[str, Any]:
    """``MutualPromptCLIP``'s keyword arguments, from ``TRAINER.MUTUAL_PROMPT``."""
    mp = cfg.TRAINER.MUTUAL_PROMPT
    return dict(
        n_ctx=mp.N_CTX,
        ctx_init=mp.CTX_INIT,
        ftp_mode=mp.FTP.MODE,
        tvp_enabled=mp.TVP.ENABLED,
        tvp_topk=mp.TVP.TOPK,
        tvp_temp=mp.TVP.TEMP,
        tvp_n_tokens=mp.TVP.N_TOKENS,
        tvp_depth=mp.TVP.DEPTH,
        text_chunk=mp.TEXT_CHUNK,
        text_shared_prefix=mp.TEXT_SHARED_PREFIX,
        text_truncate=mp.TEXT_TRUNCATE,
        text_checkpoint=mp.TEXT_CHECKPOINT,
    )


def build_mutual_prompt_clip(cfg, classnames, clip_model) -> MutualPromptCLIP:
    """The model of a config ``validate_cfg`` passed, on ``clip_model`` (checked to fit: TVP.DEPTH)."""
    validate_backbone_fit(cfg, clip_model)
    return MutualPromptCLIP(clip_model, classnames, **model_arguments(cfg))


@TRAINER_REGISTRY.register()
class MutualPrompt(TrainerX):
    """Frozen CLIP; trains only ``prompt_learner`` (context, FTP, TVP) with cross-entropy.

    The prompt parameters are float32 in every PREC (master weights, see ``precision.py``).
    """

    def check_cfg(self, cfg) -> None:
        """``validate_cfg`` with this trainer's block, when the trainer is built."""
        validate_cfg(cfg, trainer="MutualPrompt")

    def build_data_loader(self) -> None:
        """Under Dassl, first the run's environment block and the worker cap (the built-in runtime
        does both itself, for every trainer): Dassl builds the loaders from ``cfg`` here."""
        start_under_dassl(BACKEND, self.device, self.cfg)
        super().build_data_loader()

    def build_model(self) -> None:
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        self.precision = resolve_precision(cfg.TRAINER.MUTUAL_PROMPT.PREC, self.device,
                                           "TRAINER.MUTUAL_PROMPT.PREC")
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME}, precision: {self.precision})")
        clip_model = load_frozen_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, self.device,
                                      self.precision, cfg.INPUT.SIZE)

        print("Building MutualPromptCLIP")
        self.model = build_mutual_prompt_clip(cfg, classnames, clip_model)  # CLIP frozen, prompts trainable
        trainable = sum(p.numel() for p in self.model.prompt_learner.parameters())
        print(f"Trainable parameters (prompt_learner): {trainable:,}, float32")

        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model.prompt_learner, cfg.MODEL.INIT_WEIGHTS)

        self.model.to(self.device)
        self.optim = build_optimizer(self.model.prompt_learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model("prompt_learner", self.model.prompt_learner, self.optim, self.sched)
        self.scaler = grad_scaler(self.precision, self.device)

    def resume_model_if_exist(self, directory: str) -> int:
        """Under Dassl, ``resume_models`` (read with ``weights_only=True`` on every torch) instead of
        Dassl's ``torch.load`` with the default, and the best validation result so far, which Dassl
        restarts at -inf; the built-in runtime does both itself."""
        if BACKEND != "dassl":
            return super().resume_model_if_exist(directory)
        start_epoch = resume_models(directory, self._models, self._optims, self._scheds)
        if start_epoch > 0:
            self.best_result, _ = best_val_so_far(directory, self.get_model_names())
        return start_epoch

    def after_train(self) -> None:
        print(FINISHED_TRAINING_LINE)
        super().after_train()

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with autocast(self.precision, self.device):
            logits = self.model(image)
            loss = F.cross_entropy(logits.float(), label)
        self.model_backward_and_update(loss)
        summary = {"loss": loss.item(), "acc": compute_accuracy(logits, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    # One gradient step under both hosts: their model_backward_and_update calls model_zero_grad,
    # model_backward (the built-in runtime's also averages gradients under torchrun) and model_update.
    # With a GradScaler (PREC amp on CUDA) the three below scale the loss, leave non-finite losses to
    # the scaler and step through it.

    def detect_anomaly(self, loss) -> None:
        if self.scaler is None:  # with a GradScaler, a non-finite loss makes the scaler skip the step
            super().detect_anomaly(loss)

    def model_backward(self, loss) -> None:
        super().model_backward(loss if self.scaler is None else self.scaler.scale(loss))

    def model_update(self, names=None) -> None:
        if self.scaler is None:
            super().model_update(names)
            return
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self.scaler.step(self._optims[name])
        self.scaler.update()

    def parse_batch_train(self, batch):
        # Dassl's TrainerX returns (input, label, domain); ours needs only the first two, as CoOp's.
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def model_inference(self, image):
        with autocast(self.precision, self.device):
            return self.model(image).float()

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Dassl's ``load_model`` (``<directory>/prompt_learner/model.pth.tar-<epoch>``, else
        ``model-best.pth.tar``), the same under either backend: ``load_trained_models``, which the
        built-in runtime's ``load_model`` calls too, reads the file with ``weights_only=True``, prints
        epoch and val_result when present and loads the weights strictly; a checkpoint written with
        another config is an error naming the config keys that differ. No directory is an error."""
        if not directory:
            raise ValueError(NO_CHECKPOINT_MESSAGE)
        load_trained_models(self._models, directory, epoch, config_hint=config_difference_hint)
