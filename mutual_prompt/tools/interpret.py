"""What a MutualPrompt checkpoint's prompts say (``interpret_prompt.py``, CoOp's script of that name).

- **Learned context**: for each context token, the top-k nearest rows of CLIP's ``token_embedding``
  (Euclidean distance, as CoOp's script), named by the BPE vocabulary of OpenAI's tokenizer.
- **FTP** (``fine`` or ``shared``): the image-conditioned context ``ctx + s(x0)`` averaged over the
  images of the evaluated split, whose nearest words say where the images move each token, and the
  mean size of that move.
- **TVP**: how often an image's true class is among the top-k classes whose text builds its visual
  prompt (the same selection as ``TextReorganizedVisualPrompt.top_classes``), and the most frequent
  sets of top-k classes.

The results come as plain-text tables, one CSV (``CSV_COLUMNS``) and a figure (matplotlib, optional).
"""
import csv
import functools
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..clip import autocast
from ..clip.openai.simple_tokenizer import SimpleTokenizer
from ..files import atomic_path
from ..run.checkpoints import BEST_MODEL_FILE, checkpoint_summary, model_checkpoint_path, newest_checkpoint
from ..run.config_checks import has_key
from ..run.fingerprint import BACKBONE_IDENTITY_KEYS, FINGERPRINT_FILE, read_fingerprint

MODEL_NAME = "prompt_learner"  # the trainer's model folder under a run's output directory
WORD_END = "</w>"
WORD_PIECE_MARK = "-"  # after a token that does not end a word: "pho-" is the start of a longer word
VOCABULARY_CHUNK = 8192  # embedding rows per distance computation
CSV_COLUMNS = ("section", "token", "rank", "token_id", "text", "value")
PLOT_MISSING = 'the figure needs matplotlib: pip install -e ".[plot]" (or pip install matplotlib)'


# The checkpoint, its run and its config


def locate_checkpoint(path: str, epoch: Optional[int] = None) -> Tuple[str, str]:
    """(the checkpoint file, the run folder holding its fingerprint or "") for ``path``: a checkpoint
    file, or a training run's output folder (``--load-epoch``'s checkpoint, else ``model-best.pth.tar``
    where there is one, else the newest)."""
    if os.path.isfile(path):
        if epoch is not None:
            raise ValueError(f"--load-epoch {epoch} goes with a run folder; {path} is a checkpoint file")
        folder = os.path.dirname(os.path.abspath(path))
        return path, os.path.dirname(folder) if os.path.basename(folder) == MODEL_NAME else ""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such file or folder; give a checkpoint file or the output folder of a "
                                "MutualPrompt training run")
    if epoch is not None or os.path.isfile(os.path.join(path, MODEL_NAME, BEST_MODEL_FILE)):
        return model_checkpoint_path(path, MODEL_NAME, epoch), path
    newest = newest_checkpoint(path)
    if newest is None:
        return model_checkpoint_path(path, MODEL_NAME, None), path  # its error lists what the folder holds
    return newest, path


def apply_fingerprint(cfg, run_dir: str) -> Optional[str]:
    """Set ``cfg``'s keys to the values the run in ``run_dir`` was made with (its run fingerprint);
    the fingerprint's path, or None where the run has none. Keys ``cfg`` lacks (another host's) are
    left out; a value of another type is a ``ValueError`` naming the file and the key."""
    stored = read_fingerprint(run_dir) if run_dir else None
    if stored is None:
        return None
    path = os.path.join(run_dir, FINGERPRINT_FILE)
    for key, value in stored.config.items():
        if key in BACKBONE_IDENTITY_KEYS or not has_key(cfg, key):
            continue
        try:
            cfg.merge_from_list([key, value])
        except (ValueError, AssertionError) as e:
            raise ValueError(f"{path}: {key} {value!r} does not fit this config ({e})") from e
    return path


# Words


@functools.lru_cache(maxsize=1)
def vocabulary() -> Tuple[str, ...]:
    """The text of each token id of OpenAI's BPE tokenizer (49,408), a word piece ending in ``-``."""
    tokenizer = SimpleTokenizer()
    words = []
    for token_id in range(len(tokenizer.decoder)):
        token = tokenizer.decoder[token_id]
        if token.startswith("<|"):  # <|startoftext|>, <|endoftext|>
            words.append(token)
            continue
        text = bytearray(tokenizer.byte_decoder[c] for c in token.replace(WORD_END, "")).decode("utf-8", "replace")
        words.append(text if token.endswith(WORD_END) else text + WORD_PIECE_MARK)
    return tuple(words)


def nearest_words(vectors: Tensor, embedding: Tensor, topk: int) -> Tuple[Tensor, Tensor]:
    """Distances ``[N, k]`` and token ids ``[N, k]`` of the ``topk`` rows of ``embedding [V, W]``
    nearest to each of ``vectors [N, W]``, nearest first: Euclidean, computed in float32 from the
    differences (a vector equal to a row is at distance 0 exactly)."""
    vectors = vectors.detach().float()
    distances = torch.cat([torch.cdist(vectors, chunk.detach().float(), compute_mode="donot_use_mm_for_euclid_dist")
                           for chunk in embedding.split(VOCABULARY_CHUNK)], dim=1)
    return distances.topk(min(topk, distances.shape[1]), dim=1, largest=False)


@dataclass(frozen=True)
class Neighbour:
    token: int  # the context token, from 1
    rank: int  # from 1, nearest first
    token_id: int
    word: str
    distance: float


def word_table(vectors: Tensor, embedding: Tensor, words: Sequence[str], topk: int) -> List[Neighbour]:
    """The ``topk`` nearest words of each vector, as rows."""
    if len(words) != embedding.shape[0]:
        raise ValueError(f"the backbone's token embedding has {embedding.shape[0]:,} rows, OpenAI's BPE vocabulary "
                         f"{len(words):,} tokens: only that tokenizer's words can be named")
    if vectors.shape[-1] != embedding.shape[1]:
        raise ValueError(f"the context tokens are {vectors.shape[-1]} wide, the backbone's token embedding "
                         f"{embedding.shape[1]}: the checkpoint was trained on another backbone")
    distances, ids = nearest_words(vectors, embedding, topk)
    return [Neighbour(m + 1, r + 1, int(ids[m, r]), words[int(ids[m, r])], float(distances[m, r]))
            for m in range(ids.shape[0]) for r in range(ids.shape[1])]


# The evaluated split: FTP's conditioned context and TVP's class selection


@torch.no_grad()
def image_features(model, loader, device, precision: str) -> Tuple[Tensor, Tensor]:
    """The unprompted, normalised image features x0 ``[N, D]`` (float32, on the CPU) and the labels
    ``[N]`` of every image of ``loader``, by ``model.encode_image`` (a ``MutualPromptCLIP``)."""
    features, labels = [], []
    for batch in loader:
        with autocast(precision, device):
            features.append(model.encode_image(batch["img"].to(device)).float().cpu())
        labels.append(batch["label"].cpu())
    return torch.cat(features), torch.cat(labels)


@torch.no_grad()
def conditioned_context(prompt_learner, x0: Tensor, batch_size: int = 1024) -> Tuple[Tensor, Tensor]:
    """The image-conditioned context ``ctx + s(x0)`` averaged over the images ``[M, W]``, and the mean
    norm of each token's offset ``s_m(x0)`` ``[M]``."""
    ctx = prompt_learner.ctx.detach().float()
    device = ctx.device
    offset_sum, norm_sum = torch.zeros_like(ctx), torch.zeros(ctx.shape[0], device=device)
    for chunk in x0.split(batch_size):
        offsets = prompt_learner.ftp(chunk.to(device)).float()  # [B, M, W]
        offset_sum += offsets.sum(dim=0)
        norm_sum += offsets.norm(dim=-1).sum(dim=0)
    return ctx + offset_sum / x0.shape[0], norm_sum / x0.shape[0]


def topk_recall(top_classes: Tensor, labels: Tensor) -> float:
    """The share of images whose label is among their ``top_classes [N, k]``."""
    return (top_classes == labels.unsqueeze(1)).any(dim=1).float().mean().item()


def frequent_class_sets(top_classes: Tensor, n: int) -> List[Tuple[Tuple[int, ...], int]]:
    """The ``n`` most frequent sets of top-k classes (each sorted by label) with their counts."""
    counts = Counter(tuple(sorted(row)) for row in top_classes.tolist())
    return counts.most_common(n)


@dataclass
class TvpSelection:
    k: int
    recall: float  # the true class among the top k
    top1: float  # the true class first: zero-shot accuracy with TVP's template
    class_sets: List[Tuple[Tuple[str, ...], int]]


def tvp_selection(tvp, x0: Tensor, labels: Tensor, classnames: Sequence[str], n_sets: int) -> TvpSelection:
    """TVP's top-k classes of each image (``tvp.top_classes``) against the true classes."""
    _, top = tvp.top_classes(x0.to(tvp.class_text_features.device))
    top = top.cpu()
    sets = [(tuple(classnames[c] for c in classes), count) for classes, count in frequent_class_sets(top, n_sets)]
    return TvpSelection(top.shape[1], topk_recall(top, labels), topk_recall(top[:, :1], labels), sets)


# The result and its forms


@dataclass
class Interpretation:
    checkpoint: str
    summary: str  # the checkpoint's epoch and val_result
    topk: int
    init_words: List[str]  # CTX_INIT's words, one per token, or none
    context: List[Neighbour]
    conditioned: List[Neighbour] = field(default_factory=list)
    offset_norms: List[float] = field(default_factory=list)
    context_norms: List[float] = field(default_factory=list)
    split: str = ""
    n_images: int = 0
    tvp: Optional[TvpSelection] = None
    notes: List[str] = field(default_factory=list)


def _by_token(rows: Sequence[Neighbour]) -> Dict[int, List[Neighbour]]:
    grouped: Dict[int, List[Neighbour]] = {}
    for row in rows:
        grouped.setdefault(row.token, []).append(row)
    return grouped


def _word_rows(result: Interpretation, rows: Sequence[Neighbour], extra: Sequence[str] = ()) -> List[List[str]]:
    body = []
    for token, neighbours in _by_token(rows).items():
        init = result.init_words[token - 1] if token - 1 < len(result.init_words) else ""
        cells = [f"{n.word} {n.distance:.4f}" for n in neighbours]
        body.append([str(token), init, *(extra[token - 1:token] if extra else []), *cells])
    return body


def render_text(result: Interpretation) -> str:
    """The plain-text tables."""
    from tabulate import tabulate

    ranks = [str(r) for r in range(1, result.topk + 1)]
    lines = [f"Checkpoint: {result.checkpoint}" + (f" ({result.summary})" if result.summary else ""),
             f"Nearest words: Euclidean distance to CLIP's token_embedding rows (a word piece ends in "
             f"'{WORD_PIECE_MARK}'); columns 1-{result.topk}, nearest first", ""]
    n_tokens = len(_by_token(result.context))
    lines.append(f"Learned context ({n_tokens} tokens):")
    lines.append(tabulate(_word_rows(result, result.context), headers=["token", "CTX_INIT", *ranks],
                          tablefmt="simple", disable_numparse=True))
    if result.conditioned:
        moves = [f"{offset:.4f} ({offset / norm:.0%})"
                 for offset, norm in zip(result.offset_norms, result.context_norms)]
        lines += ["", f"FTP: the image-conditioned context ctx + s(x0), averaged over the {result.n_images:,} images "
                      f"of the {result.split} split; 'mean |s|' is the offset's mean norm (share of |ctx|):",
                  tabulate(_word_rows(result, result.conditioned, moves),
                           headers=["token", "CTX_INIT", "mean |s|", *ranks], tablefmt="simple", disable_numparse=True)]
    if result.tvp is not None:
        tvp = result.tvp
        lines += ["", f"TVP: the top-{tvp.k} classes of each image (cosine of x0 with 'a photo of a {{class}}.'), "
                      f"{result.n_images:,} images of the {result.split} split:",
                  f"  true class among them (top-{tvp.k} recall): {tvp.recall:.4f}",
                  f"  true class first (top-1, TVP's zero-shot accuracy): {tvp.top1:.4f}",
                  f"Most frequent top-{tvp.k} class sets:",
                  tabulate([[str(count), f"{count / result.n_images:.1%}", ", ".join(names)]
                            for names, count in tvp.class_sets], headers=["images", "share", "classes"],
                           tablefmt="simple", disable_numparse=True)]
    if result.notes:
        lines += [""] + [f"Note: {note}" for note in result.notes]
    return "\n".join(lines).rstrip("\n")


def csv_rows(result: Interpretation) -> List[List[Any]]:
    """The rows of the CSV (``CSV_COLUMNS``): ``context`` and ``conditioned`` rows (a word and its
    distance), ``offset_norm`` (FTP's mean offset norm per token), ``tvp_recall`` and ``tvp_top1``
    (rank k, the share), ``tvp_class_set`` (the classes joined by "|", the number of images)."""
    rows: List[List[Any]] = []
    for section, neighbours in (("context", result.context), ("conditioned", result.conditioned)):
        rows += [[section, n.token, n.rank, n.token_id, n.word, f"{n.distance:.6f}"] for n in neighbours]
    rows += [["offset_norm", m + 1, "", "", "", f"{norm:.6f}"] for m, norm in enumerate(result.offset_norms)]
    if result.tvp is not None:
        tvp = result.tvp
        rows += [["tvp_recall", "", tvp.k, "", "", f"{tvp.recall:.6f}"],
                 ["tvp_top1", "", 1, "", "", f"{tvp.top1:.6f}"]]
        rows += [["tvp_class_set", "", i + 1, "", "|".join(names), count]
                 for i, (names, count) in enumerate(tvp.class_sets)]
    return rows


def write_csv(result: Interpretation, path: str) -> str:
    """The CSV, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_rows(result))
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(buffer.getvalue())
    return path


def figure_problem() -> Optional[str]:
    """Why no figure can be drawn (matplotlib missing), or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return PLOT_MISSING
    return None


def draw(result: Interpretation):
    """One panel per table of words: a row per context token, a column per rank, each cell the word,
    coloured by its distance; TVP's recall in the title. Returns the matplotlib figure."""
    from .figures import _pyplot

    plt = _pyplot()
    panels = [("Learned context", result.context)] + ([("FTP, averaged over the images", result.conditioned)]
                                                     if result.conditioned else [])
    n_tokens = len(_by_token(result.context))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.6 * result.topk * len(panels) + 1, 0.6 * n_tokens + 1.6),
                             squeeze=False)
    for ax, (title, rows) in zip(axes[0], panels):
        grouped = _by_token(rows)
        distances = [[n.distance for n in grouped[token]] for token in sorted(grouped)]
        image = ax.imshow(distances, cmap="viridis_r", aspect="auto")
        for i, token in enumerate(sorted(grouped)):
            for j, n in enumerate(grouped[token]):
                dark = image.norm(n.distance) > 0.5  # viridis_r: far words are dark cells
                ax.text(j, i, f"{n.word}\n{n.distance:.3f}", ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
        ax.set_xticks(range(result.topk), [str(r) for r in range(1, result.topk + 1)])
        ax.set_yticks(range(len(grouped)), [f"{token} {result.init_words[token - 1]}" if token - 1 < len(
            result.init_words) else str(token) for token in sorted(grouped)])
        ax.set_xlabel("rank (nearest first)")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, label="Euclidean distance")
    title = f"Nearest words of {os.path.basename(result.checkpoint)}"
    if result.tvp is not None:
        title += f"; TVP top-{result.tvp.k} recall {result.tvp.recall:.3f} ({result.split}, {result.n_images:,} images)"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# Putting it together


def context_interpretation(checkpoint_path: str, checkpoint: Dict[str, Any], embedding: Tensor, topk: int,
                           ctx_init: str = "") -> Interpretation:
    """The learned context's nearest words; ``ctx_init`` (CTX_INIT) names the tokens it started from."""
    ctx = checkpoint["state_dict"].get("ctx")
    if ctx is None or ctx.dim() != 2:
        shape = "no 'ctx'" if ctx is None else f"'ctx' of shape {tuple(ctx.shape)}"
        raise ValueError(f"{checkpoint_path} holds {shape}; a MutualPrompt prompt_learner checkpoint holds the "
                         "learned context as 'ctx' [tokens, width]")
    words = ctx_init.replace("_", " ").split() if ctx_init else []
    return Interpretation(checkpoint_path, checkpoint_summary(checkpoint), topk,
                          words if len(words) == ctx.shape[0] else [],
                          word_table(ctx, embedding, vocabulary(), topk))


def needs_images(state_dict) -> bool:
    """Whether the checkpoint has FTP offsets or TVP, whose analyses read the evaluated split."""
    return any(key.startswith(("ftp.meta_net.", "tvp.")) for key in state_dict)


def add_split_analyses(result: Interpretation, model, loader, classnames: Sequence[str], split: str, device,
                       precision: str, n_sets: int) -> None:
    """FTP's conditioned context and TVP's class selection over the images of ``loader`` (the split
    named ``split``, of the classes ``classnames``), for the ``MutualPromptCLIP`` ``model`` holding
    the checkpoint."""
    x0, labels = image_features(model, loader, device, precision)
    result.split, result.n_images = split, x0.shape[0]
    learner = model.prompt_learner
    embedding = model.clip_model.token_embedding.weight
    if learner.ftp.meta_net is not None:
        mean_ctx, offset_norms = conditioned_context(learner, x0)
        result.conditioned = word_table(mean_ctx, embedding, vocabulary(), result.topk)
        result.offset_norms = offset_norms.tolist()
        result.context_norms = learner.ctx.detach().float().norm(dim=-1).tolist()
    if learner.tvp is not None:
        result.tvp = tvp_selection(learner.tvp, x0, labels, classnames, n_sets)
