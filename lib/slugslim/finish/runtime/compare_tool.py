"""How far a converted model's outputs are from the original model's, for the tools' ``check``.

One module for ``litert_tool.py`` and ``onnx_tool.py``: each script imports it from its own directory
(a script's directory is first on ``sys.path``), so it is standalone like them: stdlib only, with
numpy passed in by the caller, which imported it from the app's Python.

- ``differences``: the largest absolute difference, and that relative to the original output's
  largest magnitude (a logit of 40 and a probability of 0.9 are not held to the same scale).
- ``top1``: the share of rows whose top class agrees, tie-aware: a row agrees when the converted
  model's top class is the original's, or one the original scored within ``tie`` (the tolerated
  max_abs) of its top, so a near-tie that a difference inside the tolerance flips is no
  disagreement. The plain share of equal argmaxes comes beside it.
- ``cosine``: the smallest cosine similarity between a row of embeddings and its original, the
  measure that matters for vectors compared by angle (a search index, a nearest neighbour).
"""

from __future__ import annotations

from typing import Any


def differences(np: Any, got: Any, want: Any) -> tuple[float, float]:
    """(max_abs, max_rel) of one output; ValueError when the shapes differ or ``got`` is not finite."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ValueError(f"the converted model gave shape {got.shape}, the original model {want.shape}")
    if not np.all(np.isfinite(got)):
        raise ValueError("the converted model gave NaN or infinite values")
    diff = float(np.max(np.abs(got - want))) if got.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    return diff, diff / scale if scale else diff


def top1(np: Any, chosen: Any, want: Any, tie: float) -> tuple[float, float]:
    """(tie-aware, exact) share of rows of ``want`` [..., classes] whose top class is ``chosen`` [...]."""
    want = np.asarray(want, dtype=np.float64)
    chosen = np.asarray(chosen, dtype=np.int64)
    scored = np.take_along_axis(want, chosen[..., None], axis=-1)[..., 0]
    return (float(np.mean(scored >= want.max(axis=-1) - tie)),
            float(np.mean(chosen == np.argmax(want, axis=-1))))


def is_probabilities(np: Any, want: Any) -> bool:
    """Rows of non-negative scores that sum to 1: a classifier's softmax output."""
    want = np.asarray(want, dtype=np.float64)
    return bool(np.all(want >= -1e-6) and np.all(np.abs(want.sum(axis=-1) - 1.0) <= 1e-3))


def cosine(np: Any, got: Any, want: Any) -> float:
    """The smallest cosine similarity of a row of ``got`` [rows, dim] with the same row of ``want``.

    Two zero rows count as equal (1.0); a zero row against a non-zero one as unrelated (0.0).
    """
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    differences(np, got, want)  # the same shape, and finite
    got, want = got.reshape(-1, got.shape[-1]), want.reshape(-1, want.shape[-1])
    if not got.size:
        return 1.0
    norms = np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1)
    both_zero = (np.linalg.norm(got, axis=-1) == 0) & (np.linalg.norm(want, axis=-1) == 0)
    dots = np.sum(got * want, axis=-1)
    similarity = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))
    return float(np.min(similarity))


def compare(np: Any, got: list[Any], want: list[Any], tie: float) -> dict[str, Any]:
    """max_abs and max_rel over every output; top-1 agreement of the outputs that have classes.

    ``classifier``: some output is a classifier's probabilities; then ``top1`` is theirs only (a
    regression head of several values is no class choice).
    """
    max_abs = max_rel = 0.0
    agreement: list[tuple[float, float]] = []
    classifier: list[tuple[float, float]] = []
    for g, w in zip(got, want, strict=True):
        diff, rel = differences(np, g, w)
        max_abs, max_rel = max(max_abs, diff), max(max_rel, rel)
        w = np.asarray(w)
        if w.ndim >= 2 and w.shape[-1] >= 2 and w.size:
            agree = top1(np, np.argmax(np.asarray(g), axis=-1), w, tie)
            agreement.append(agree)
            if is_probabilities(np, w):
                classifier.append(agree)
    shown = classifier or agreement
    return {"max_abs": max_abs, "max_rel": max_rel, "top1": min(a for a, _ in shown) if shown else None,
            "top1_exact": min(e for _, e in shown) if shown else None, "classifier": bool(classifier)}
