"""FTP, the fine-grained text prompt: image-conditioned offsets for the context tokens."""
from collections import OrderedDict
from typing import Optional

from torch import Tensor, nn

FTP_MODES = ("fine", "shared", "none")


class FineGrainedTextPrompt(nn.Module):
    """Offsets ``s_m(x0)`` added to the M context vectors, from the normalised image feature ``x0``.

    - ``fine``: a shared bottleneck ``h = ReLU(W1 x0 + b1)`` (d -> d/16) and one head per token,
      ``s_m = W2_m h + b2_m`` — M different semantics;
    - ``shared``: one head whose output goes to every token: exactly CoCoOp's meta-net, with the same
      layers (``meta_net.linear1`` / ``relu`` / ``linear2``); in a checkpoint they sit under
      ``ftp.`` and CoCoOp's also hold ``token_prefix``/``token_suffix``, so CoCoOp weights load after
      ``python -m mutual_prompt.convert from-coop`` (which maps the names), not as they are;
    - ``none``: no image conditioning (CoOp's unified context); ``forward`` returns None.

    ``mode`` is one of ``FTP_MODES`` (``TRAINER.MUTUAL_PROMPT.FTP.MODE``, checked by ``validate_cfg``).
    """

    def __init__(self, vis_dim: int, ctx_dim: int, n_ctx: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.n_ctx = n_ctx
        self.ctx_dim = ctx_dim
        if mode == "none":
            self.meta_net = None
            return
        hidden = max(vis_dim // 16, 1)
        out = ctx_dim if mode == "shared" else n_ctx * ctx_dim
        self.meta_net = nn.Sequential(
            OrderedDict([("linear1", nn.Linear(vis_dim, hidden)), ("relu", nn.ReLU(inplace=True)), ("linear2", nn.Linear(hidden, out))])
        )

    def forward(self, x0: Tensor) -> Optional[Tensor]:
        """[B, d] -> [B, M, d_t] offsets (None in mode ``none``)."""
        if self.meta_net is None:
            return None
        s = self.meta_net(x0.to(self.meta_net.linear1.weight.dtype))
        if self.mode == "shared":
            return s.unsqueeze(1).expand(-1, self.n_ctx, -1)
        return s.view(x0.shape[0], self.n_ctx, self.ctx_dim)
