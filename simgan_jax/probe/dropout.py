"""Where a depth refiner drops pixels: on the simulator hand's silhouette or inside it,
in bands or as single-pixel speckle (label-free; the hand reports' label-preservation section).

A structured-light sensor loses pixels along silhouettes and in connected bands (grazing
surfaces, projector shadows); a drop-out head that learnt "drop some pixels everywhere"
speckles the whole hand instead, which the foreground IoU alone does not show. On the
first pairs of a run, with the synthetic image's hand as the reference:

* ``ring``: the share of the synthetic hand's silhouette ring (hand pixels with a
  4-neighbour outside the hand or the image) that the image reports as no measurement;
* ``interior``: the same share for the rest of the hand;
* ``isolated``: of the interior pixels dropped, the share none of whose 4-neighbours is
  dropped or background in the image (single-pixel speckle; 0 when nothing is dropped).
"""

from __future__ import annotations

import numpy as np

# uint8 levels: hand depth is 0..127, "no measurement" / background 255 (as hand_reproduce).
FOREGROUND_BELOW = 191


def _outside_4(mask_BHW: np.ndarray, border: bool) -> np.ndarray:
  """True where some 4-neighbour is False in ``mask`` (outside the image counts as ``not border``)."""
  padded = np.pad(mask_BHW, ((0, 0), (1, 1), (1, 1)), constant_values=border)
  return ~(padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:])


def per_image(synthetic, images) -> dict[str, np.ndarray]:
  """{"ring", "interior", "isolated"}: one value per image (uint8 depth, (B, H, W[, 1]))."""
  synthetic, images = np.asarray(synthetic), np.asarray(images)
  if synthetic.shape != images.shape:
    raise ValueError(f"drop-out probe: synthetic {synthetic.shape} and images {images.shape} differ in shape")
  if synthetic.ndim == 4:
    synthetic, images = synthetic[..., 0], images[..., 0]
  hand = synthetic < FOREGROUND_BELOW
  measured = images < FOREGROUND_BELOW
  ring = hand & _outside_4(hand, border=False)
  interior = hand & ~ring
  dropped = interior & ~measured
  isolated = dropped & ~_outside_4(measured, border=True)

  def share(part, whole):
    return part.sum((1, 2)) / np.maximum(whole.sum((1, 2)), 1)

  return {"ring": share(ring & ~measured, ring), "interior": share(dropped, interior),
          "isolated": share(isolated, dropped)}


def summary(synthetic, images) -> dict[str, float]:
  """Means over images of :func:`per_image` (images with no interior drops leave ``isolated`` out)."""
  p = per_image(synthetic, images)
  any_drop = p["interior"] > 0
  return {"ring": float(p["ring"].mean()), "interior": float(p["interior"].mean()),
          "isolated": float(p["isolated"][any_drop].mean()) if any_drop.any() else 0.0}


def pool_entries(pools: dict, n: int) -> dict:
  """``{"dropout": {pool: summary}}`` for the refined and oracle pools present, against the
  first ``n`` synthetic images."""
  return {"dropout": {name: summary(pools["synthetic"][:n], pools[name][:n])
                      for name in ("refined", "oracle") if name in pools}}


def report_lines(preservation) -> list[str]:
  """The report's sentences: each pool's drop pattern and, when the refined hands are
  speckled (over a quarter of their interior drops single pixels, and over twice the
  perfect refiner's share), a caveat in bold."""
  d = preservation.get("dropout")
  if not d or "refined" not in d:
    return []
  names = {"refined": "refined", "oracle": "perfect refiner"}

  def cells(s):
    return (f"{100 * s['ring']:.0f}% of the silhouette ring, {100 * s['interior']:.0f}% of the inside, "
            f"{100 * s['isolated']:.0f}% of the inside drops single pixels")

  lines = ["Pixels reported as no measurement, of the synthetic hand's (probe/dropout.py): " +
           "; ".join(f"{names[k]} {cells(v)}" for k, v in d.items()) + "."]
  r, o = d["refined"], d.get("oracle")
  if r["isolated"] > 0.25 and (o is None or r["isolated"] > 2 * o["isolated"]):
    against = f", against {100 * o['isolated']:.0f}% for the perfect refiner's bands" if o else ""
    lines.append(f"**The refined hands are speckled:** {100 * r['isolated']:.0f}% of the pixels they drop "
                 f"inside the hand are single pixels{against}; they do not look like the target sensor's.")
  return lines + [""]
