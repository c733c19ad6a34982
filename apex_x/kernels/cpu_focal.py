"""Fast torch focal loss: cache-sized chunks, few temporaries, analytic gradient stored in the forward.

The reference builds a one-hot (N, C+1) target and a dozen full-size temporaries, and autograd keeps
them for the backward. Here every chunk of rows (~128k elements) runs through a handful of in-place
ops that stay in cache, with one transcendental pass besides the sigmoid (log_sigmoid/log1p are
scalar code in torch on CPU, ~10x slower). With class-id targets the dense pass assumes background
and the few positives are patched afterwards. The forward stores d(sum)/d(logits) (the gradient's
own size) and the backward only scales it by the incoming gradient, which carries the clip gate.
"""

from __future__ import annotations

import torch

from apex_x.kernels._common import StoredGradLoss, check_class_ids, chunk_rows, is_class_targets
from apex_x.kernels.reference import as_soft_targets

CHUNK_ELEMENTS = 1 << 17


def _sigmoid_terms(x: torch.Tensor, p: torch.Tensor, q: torch.Tensor, ls: torch.Tensor, want_q: bool) -> None:
    """p = sigmoid(x); q = p(1 - p); ls = log(1 + exp(-|x|)) = -log(max(p, 1 - p)) (no slow log1p)."""
    torch.sigmoid(x, out=p)
    torch.neg(p, out=ls).add_(1.0)  # 1 - p
    if want_q:
        torch.mul(p, ls, out=q)
    torch.maximum(p, ls, out=ls).log_().neg_()


def _bce(x: torch.Tensor, one_minus_t: torch.Tensor | None, ls: torch.Tensor, out: torch.Tensor) -> None:
    """out = (1 - t) x - logsigmoid(x) = (1 - t) x - min(x, 0) + ls: the reference's NaN/Inf behaviour."""
    torch.clamp(x, max=0.0, out=out)
    if one_minus_t is None:  # t = 0
        torch.sub(x, out, out=out)
    else:
        out.neg_().addcmul_(one_minus_t, x)
    out.add_(ls)


def general_terms(
    x: torch.Tensor, t: torch.Tensor, gamma: float, alpha: float | None, want_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Elementwise loss and d/dx for any gamma (plain ops; used for positives and gamma != 2)."""
    p, q, ls, bce = (torch.empty_like(x) for _ in range(4))
    _sigmoid_terms(x, p, q, ls, want_grad)
    one_minus_t = 1.0 - t
    _bce(x, one_minus_t, ls, bce)
    d = p - t  # dBCE/dx; the modulator |t - p|^gamma is symmetric in its sign
    ad = d.abs()
    mod = torch.ones_like(x) if gamma == 0.0 else ad.pow(gamma)
    grad = None
    if want_grad:  # d(mod)/dx = gamma |d|^(gamma-1) sign(d) p(1-p); torch's pow backward is 0 for gamma 0
        dmod = torch.zeros_like(x) if gamma == 0.0 else ad.pow(gamma - 1.0).mul_(d.sign()).mul_(q).mul_(gamma)
        grad = dmod.mul_(bce).addcmul_(mod, d)
    loss = bce.mul_(mod)
    if alpha is not None:
        alpha_t = one_minus_t.mul_(1.0 - alpha).add_(t, alpha=alpha)
        loss.mul_(alpha_t)
        if grad is not None:
            grad.mul_(alpha_t)
    return loss, grad


def _background_terms_gamma2(x: torch.Tensor, grad_out: torch.Tensor | None) -> torch.Tensor:
    """Target 0 everywhere, gamma 2: loss = p^2 BCE, d/dx = p (p^2 + 2 p(1-p) BCE) (no alpha)."""
    p, q, ls, bce = (torch.empty_like(x) for _ in range(4))
    _sigmoid_terms(x, p, q, ls, grad_out is not None)
    _bce(x, None, ls, bce)
    mod = torch.mul(p, p, out=ls)
    if grad_out is not None:
        torch.addcmul(mod, q, bce, value=2.0, out=grad_out).mul_(p)
    return bce.mul_(mod)


def _soft_terms_gamma2(
    x: torch.Tensor, t: torch.Tensor, alpha: float | None, grad_out: torch.Tensor | None
) -> torch.Tensor:
    """Soft targets, gamma 2: loss = a_t (p - t)^2 BCE, d/dx = a_t (p - t)((p - t)^2 + 2 p(1-p) BCE)."""
    p, q, ls, bce = (torch.empty_like(x) for _ in range(4))
    _sigmoid_terms(x, p, q, ls, grad_out is not None)
    one_minus_t = torch.neg(t).add_(1.0)
    _bce(x, one_minus_t, ls, bce)
    d = torch.sub(p, t, out=ls)
    mod = torch.mul(d, d, out=p)
    if grad_out is not None:
        torch.addcmul(mod, q, bce, value=2.0, out=grad_out).mul_(d)
    loss = bce.mul_(mod)
    if alpha is not None:
        alpha_t = one_minus_t.mul_(1.0 - alpha).add_(t, alpha=alpha)  # alpha t + (1 - alpha)(1 - t)
        loss.mul_(alpha_t)
        if grad_out is not None:
            grad_out.mul_(alpha_t)
    return loss


def _chunk_terms(x, t, gamma, alpha, grad_out):
    """Loss of a chunk (alpha included) and its gradient written into grad_out (fp32) when given."""
    if gamma == 2.0:
        if t is not None:
            return _soft_terms_gamma2(x, t, alpha, grad_out)
        loss = _background_terms_gamma2(x, grad_out)
        if alpha is not None:
            loss.mul_(1.0 - alpha)
            if grad_out is not None:
                grad_out.mul_(1.0 - alpha)
        return loss
    loss, grad = general_terms(x, torch.zeros_like(x) if t is None else t, gamma, alpha, grad_out is not None)
    if grad_out is not None:
        grad_out.copy_(grad)
    return loss


def focal_sum_forward(
    logits: torch.Tensor,  # (N, C)
    targets: torch.Tensor,  # (N,) class ids or (N, C) soft
    weights: torch.Tensor | None,  # (N,)
    gamma: float,
    alpha: float | None,
    want_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(sum of w * focal loss as a 0-d fp32 tensor, d(sum)/d(logits) in logits' dtype or None)."""
    logits = logits.contiguous()
    rows, classes = logits.shape
    sparse = is_class_targets(targets) and logits.device.type == "cpu"
    if is_class_targets(targets) and not sparse:
        check_class_ids(targets.long(), classes)
        targets = as_soft_targets(targets, classes)  # (N, C) one-hot, no host sync on accelerators
    w = None if weights is None else weights.float()
    grad_all = torch.empty_like(logits) if want_grad else None
    direct = grad_all is not None and grad_all.dtype == torch.float32
    total = torch.zeros((), dtype=torch.float64, device=logits.device)  # chunk sums add up in fp64
    chunks = chunk_rows(rows, classes, CHUNK_ELEMENTS, logits.device)
    if sparse:  # positives: (row, class) pairs with class id >= 0, sorted by flat index
        pos_rows = torch.nonzero(targets >= 0).squeeze(1)
        pos_cls = targets[pos_rows].long()
        check_class_ids(pos_cls, classes)
        flat = pos_rows * classes + pos_cls
        x_pos = logits.reshape(-1)[flat].float()
        pos_loss, pos_grad = general_terms(x_pos, torch.ones_like(x_pos), gamma, alpha, want_grad)
        if w is not None:
            pos_loss.mul_(w[pos_rows])
            if pos_grad is not None:
                pos_grad.mul_(w[pos_rows])
        total += pos_loss.sum()
        bounds = torch.searchsorted(pos_rows, torch.tensor([c[0] for c in chunks] + [rows])).tolist()
    for index, (start, stop) in enumerate(chunks):
        x = logits[start:stop].float()
        t = None if sparse else targets[start:stop].float()
        grad = None if grad_all is None else (grad_all[start:stop] if direct else torch.empty_like(x))
        loss = _chunk_terms(x, t, gamma, alpha, grad)
        if w is not None:
            w_rows = w[start:stop].unsqueeze(1)
            loss.mul_(w_rows)
            if grad is not None:
                grad.mul_(w_rows)
        if sparse and bounds[index + 1] > bounds[index]:
            lo, hi = bounds[index], bounds[index + 1]
            local = flat[lo:hi] - start * classes
            loss.view(-1).index_fill_(0, local, 0.0)  # positives were summed above
            if grad is not None:
                grad.view(-1).index_copy_(0, local, pos_grad[lo:hi])
        total += loss.sum()
        if grad is not None and not direct:
            grad_all[start:stop].copy_(grad)
    return total.float(), grad_all


def focal_loss_torch(
    logits: torch.Tensor,  # (N, C)
    targets: torch.Tensor,  # (N,) class ids or (N, C) soft
    weights: torch.Tensor | None,  # (N,)
    gamma: float,
    alpha: float | None,
    normalizer: float | torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """min(nan_to_num(sum(w * focal) / normalizer), clip), differentiable in `logits` only."""

    def forward_fn(want_grad: bool):
        return focal_sum_forward(logits.detach(), targets, weights, gamma, alpha, want_grad)

    return StoredGradLoss.apply(logits, forward_fn, normalizer, clip)
