r"""Losses for partially annotated data: marginal cross-entropy + Dice, and the exclusion term.

Shi, Miao, Zhou et al., "Marginal loss and exclusion loss for partially supervised multi-organ
segmentation", Medical Image Analysis 70 (2021) 101979.

Notation: the network predicts softmax probabilities :math:`p_k(v)` for the classes
:math:`k = 0..K` (0 background) at voxel :math:`v`. A sample comes from a dataset that
annotates the structures :math:`A \subseteq \{1..K\}` and may declare structures
:math:`X` known to be absent from its images; the others, :math:`U = \{1..K\} \setminus
(A \cup X)`, may be present anywhere its label says "background". Its label :math:`y(v)` is
in :math:`\{0\} \cup A`.

**Marginal loss.** Background and the unknown structures are merged into one class,

.. math:: \tilde p_0(v) = p_0(v) + \sum_{k \in U} p_k(v), \qquad
          \tilde p_k = p_k \ (k \in A \cup X),

a proper distribution over :math:`\{0\} \cup A \cup X`, and the usual losses are applied to it:

.. math:: L_\text{mCE} = -\frac{1}{|V|}\sum_v \log \tilde p_{y(v)}(v), \qquad
          L_\text{mDice} = -\frac{1}{|A|}\sum_{k \in A}
          \frac{2\sum_v \tilde p_k(v)\,[y(v)=k] + \epsilon}
               {\sum_v \tilde p_k(v) + \sum_v [y(v)=k] + \epsilon}.

A voxel labelled background is thus only asked not to be an annotated (or absent) structure:
the network may predict an unknown structure there without penalty. :math:`\log \tilde p_0`
is computed as a ``logsumexp`` of log-probabilities, so it stays finite. Structures in
:math:`X` are not merged: every voxel of such a sample is evidence against them.

**Exclusion loss.** Organs do not overlap, so a voxel annotated as structure :math:`c` is
known not to hold any other structure, and no voxel holds a structure of :math:`X`. With the
exclusion mask :math:`E_k(v) = [y(v) \in A \setminus \{k\}] \lor [k \in X]`, the exclusion
term is a Dice overlap between predictions and what is excluded, to be minimised:

.. math:: L_\text{exc} = \frac{1}{|K_E|}\sum_{k \in K_E}
          \frac{2\sum_v p_k(v) E_k(v) + \epsilon}{\sum_v p_k(v) + \sum_v E_k(v) + \epsilon},

over the foreground classes :math:`K_E` whose mask is not empty. The total is
:math:`L_\text{mCE} + w_\text{Dice} L_\text{mDice} + w_\text{exc} L_\text{exc}`, averaged
over the samples of a batch (the Dice terms per sample, as nnU-Net's default
``batch_dice=False``).

**Plain loss** (the baseline): the same cross-entropy + Dice with :math:`U = \emptyset`, i.e.
every unannotated structure is taken for background, and the Dice over all foreground classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["exclusion_loss", "marginal_loss", "partial_label_loss", "plain_loss"]

_SMOOTH = 1e-5


def _merge_mask(annotated: torch.Tensor, absent: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` True for the classes merged into background: 0 and the unknown ones."""
    merged = ~(annotated | absent)
    merged[:, 0] = True
    return merged


def _dice_terms(probs: torch.Tensor, onehot: torch.Tensor, smooth: float = _SMOOTH) -> torch.Tensor:
    """Soft Dice per sample and class, ``(B, C)``."""
    dims = tuple(range(2, probs.ndim))
    intersect = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    return (2 * intersect + smooth) / torch.clamp(denominator + smooth, min=1e-8)


def marginal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    annotated: torch.Tensor,
    absent: torch.Tensor,
    dice_weight: float = 1.0,
) -> torch.Tensor:
    """Marginal cross-entropy + marginal soft Dice (see the module docstring).

    Parameters
    ----------
    logits
        ``(B, C, *spatial)`` network outputs.
    target
        ``(B, *spatial)`` labels, within background and each sample's annotated classes.
    annotated, absent
        ``(B, C)`` boolean masks of each sample's annotated and absent classes.
    dice_weight
        Weight of the Dice term.
    """
    logits = logits.float()
    n_classes = logits.shape[1]
    view = (*annotated.shape, *([1] * (logits.ndim - 2)))
    log_probs = F.log_softmax(logits, dim=1)
    merged = _merge_mask(annotated, absent).view(view)
    merged_log = torch.logsumexp(log_probs.masked_fill(~merged, -torch.inf), dim=1)
    picked = log_probs.gather(1, target[:, None]).squeeze(1)
    ce = -torch.where(target == 0, merged_log, picked).mean()
    if dice_weight == 0:
        return ce
    probs = log_probs.exp()
    keep = ~merged
    merged_probs = torch.where(merged, probs, torch.zeros_like(probs)).sum(1, keepdim=True)
    marginal = torch.cat([merged_probs, torch.where(keep, probs, 0.0)[:, 1:]], dim=1)
    onehot = F.one_hot(target, n_classes).movedim(-1, 1).to(probs.dtype)
    dice = _dice_terms(marginal, onehot)
    fg_annotated = annotated.clone()
    fg_annotated[:, 0] = False
    weights = fg_annotated.to(dice.dtype)
    per_sample = (dice * weights).sum(1) / torch.clamp(weights.sum(1), min=1.0)
    return ce - dice_weight * per_sample.mean()


def plain_loss(
    logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0
) -> torch.Tensor:
    """Cross-entropy + soft Dice over all foreground classes (unannotated = background)."""
    logits = logits.float()
    ce = F.cross_entropy(logits, target)
    if dice_weight == 0:
        return ce
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    dice = _dice_terms(probs, onehot)[:, 1:]
    return ce - dice_weight * dice.mean()


def exclusion_loss(
    logits: torch.Tensor, target: torch.Tensor, annotated: torch.Tensor, absent: torch.Tensor
) -> torch.Tensor:
    """Exclusion Dice between each class's prediction and where it is known not to be."""
    probs = logits.float().softmax(1)
    n_classes = logits.shape[1]
    view = (*annotated.shape, *([1] * (logits.ndim - 2)))
    onehot = F.one_hot(target, n_classes).movedim(-1, 1).to(probs.dtype)
    labelled = (target > 0).to(probs.dtype)[:, None]
    exclusion = torch.clamp(labelled - onehot, min=0.0)  # annotated as another structure
    exclusion = torch.where(absent.view(view), torch.ones_like(exclusion), exclusion)
    exclusion = exclusion[:, 1:]
    dims = tuple(range(2, probs.ndim))
    present = exclusion.sum(dims) > 0
    overlap = _dice_terms(probs[:, 1:], exclusion)
    weights = present.to(overlap.dtype)
    return (overlap * weights).sum() / torch.clamp(weights.sum(), min=1.0)


def partial_label_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    annotated: torch.Tensor,
    absent: torch.Tensor,
    *,
    kind: str = "marginal",
    dice_weight: float = 1.0,
    exclusion_weight: float = 0.0,
) -> torch.Tensor:
    """The training loss: ``"marginal"`` (+ exclusion) or ``"plain"`` (module docstring)."""
    if kind == "plain":
        loss = plain_loss(logits, target, dice_weight)
    else:
        loss = marginal_loss(logits, target, annotated, absent, dice_weight)
    if exclusion_weight:
        loss = loss + exclusion_weight * exclusion_loss(logits, target, annotated, absent)
    return loss
