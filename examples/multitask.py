"""A multi-task loss the TF-Slim way (seed 003), on built-in synthetic data.

A model predicts a scene class (softmax over 10 classes) and a per-pixel depth map whose
missing pixels carry zero weight; an L2 penalty is added as a regularization loss. Run:

    python examples/multitask.py
"""
import numpy as np

import lossforge
from lossforge import losses

rng = np.random.default_rng(0)
batch, classes, pixels = 32, 10, 64 * 64

scene_logits = rng.normal(size=(batch, classes)).astype(np.float32)
scene_labels = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, size=batch)]
depth = rng.uniform(0.5, 10.0, size=(batch, pixels)).astype(np.float32)
depth[rng.random(depth.shape) < 0.1] = 0.0                  # missing sensor readings
depth_pred = (depth + rng.normal(scale=0.3, size=depth.shape)).astype(np.float32)
conv_w = rng.normal(scale=0.1, size=(3, 3, 16, 32)).astype(np.float32)

with lossforge.LossCollection() as collection:
    scene = losses.softmax_cross_entropy(scene_labels, scene_logits, weights=2.0, label_smoothing=0.1)
    mask = (depth > 0).astype(np.float32)                   # zero weight where depth is missing
    depth_loss = losses.mean_squared_error(depth, depth_pred, weights=mask)
    losses.add_loss(1e-4 * 0.5 * float(np.sum(conv_w.astype(np.float64) ** 2)),
                    loss_collection=lossforge.REGULARIZATION_LOSSES)
    total = losses.get_total_loss()

print(f"scene (2 x softmax CE, smoothing 0.1): {scene:.6f}")
print(f"depth (MSE over {int(mask.sum())} valid pixels): {depth_loss:.6f}")
print(f"regularization (1e-4 x l2):             {sum(collection.get_regularization_losses()):.6f}")
print(f"total:                                  {total:.6f}")
print(f"collected: {collection}")
