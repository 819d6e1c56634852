"""Score cases shared by the functional tests: an attnlab score and its row-wise reference."""

import math

import torch
import torch.nn.functional as F

from attnlab import functional as AF

DQ = 11  # query/key width, distinct from every other size in these tests


def make_cases(dtype=torch.float64, lk_max=32, generator=None):
    g = generator or torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_()

    hid = 6
    w_gen = rnd(DQ, DQ)
    v_add, wq, wk = rnd(hid), rnd(hid, DQ), rnd(hid, DQ)
    w_loc, b_loc = rnd(lk_max, DQ), rnd(lk_max)
    return {
        "dot": (AF.dot(), lambda qi, K: K @ qi),
        "scaled_dot": (AF.scaled_dot(), lambda qi, K: K @ qi / math.sqrt(qi.numel())),
        "general": (AF.general(w_gen), lambda qi, K: K @ (w_gen.T.double() @ qi)),
        "additive": (
            AF.additive(v_add, wq, wk),
            lambda qi, K: torch.tanh(wq.double() @ qi + K @ wk.double().T) @ v_add.double(),
        ),
        "location": (
            AF.location(w_loc, b_loc),
            lambda qi, K: (w_loc.double() @ qi + b_loc.double())[: K.shape[0]],
        ),
        "cosine": (AF.cosine(3.0), lambda qi, K: 3.0 * F.cosine_similarity(K, qi[None], dim=-1)),
    }
