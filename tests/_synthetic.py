"""A synthetic COCO keypoint set and a stand-in pose model that reads it, for end-to-end tests.

Every person is 17 colour-coded dots (keypoint k drawn in colour ``CODES[k]``) on a dark noisy background.
:class:`DotPoseModel` is a model in the sense of the pipeline (normalised RGB crops (N, 3, H, W) in,
heatmaps (N, 17, H/4, W/4) out) that sees nothing but the crop's pixels: for every code it finds the dot's
centroid in the crop and returns a Gaussian heatmap there, at the heatmap position the official target
generation gives a crop pixel (``u / 4``). Like a trained network it knows anatomy, not pixels: on a
mirrored crop (the flip test) the person's left shoulder appears left of the right one, so it labels the
dots of every left/right pair the other way round, as a network trained with flipped images does. The
crops, the flip merge, decoding, the back-transform, the results format and the evaluation must all agree
for the predictions to land on the ground truth: with them the COCO keypoint AP is ~1.
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn

KEYPOINT_NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle"]
SKELETON_1BASED = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10],
                   [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
# A front-facing person in its box (fractions of width and height): the person's left is the image's right.
TEMPLATE = np.array([[0.50, 0.07], [0.60, 0.04], [0.40, 0.04], [0.70, 0.09], [0.30, 0.09], [0.78, 0.22], [0.22, 0.22],
                     [0.88, 0.38], [0.12, 0.38], [0.93, 0.53], [0.07, 0.53], [0.66, 0.55], [0.34, 0.55], [0.68, 0.75],
                     [0.32, 0.75], [0.70, 0.95], [0.30, 0.95]])
# 17 colours (BGR in the image, listed RGB here) each with one channel at 255: a dot blended with the dark
# background never reaches another code.
CODES_RGB = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255],
                      [255, 128, 0], [255, 0, 128], [128, 255, 0], [0, 255, 128], [128, 0, 255], [0, 128, 255],
                      [255, 128, 128], [128, 255, 128], [128, 128, 255], [255, 255, 128], [255, 255, 255]], dtype=np.float64)
COCO_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
DOT_RADIUS = 2


def make_person(rng, x0, y0, w, h):
    """17 integer keypoints of a person in the box (x0, y0, w, h), at least 8 px apart."""
    while True:
        kp = TEMPLATE * [w, h] + [x0, y0] + rng.uniform(-0.015, 0.015, size=(17, 2)) * [w, h]
        kp = np.round(kp)
        d = np.sqrt(((kp[:, None] - kp[None]) ** 2).sum(-1)) + np.eye(17) * 99
        if d.min() >= 8:
            return kp


def draw_persons(image_bgr, persons):
    import cv2

    for kp in persons:
        for k, (x, y) in enumerate(kp):
            r, g, b = CODES_RGB[k]
            cv2.circle(image_bgr, (int(x), int(y)), DOT_RADIUS, (int(b), int(g), int(r)), -1, lineType=cv2.LINE_8)
    return image_bgr


def make_coco(root, n_images=4, seed=0, size=(640, 480)):
    """Writes ``root/images/*.png`` and ``root/person_keypoints.json``; returns (ann path, image dir, ann)."""
    import cv2

    rng = np.random.default_rng(seed)
    img_dir = os.path.join(root, "images")
    os.makedirs(img_dir, exist_ok=True)
    width, height = size
    images, annotations = [], []
    for i in range(n_images):
        img = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
        persons = []
        n_persons = 2 if i % 2 == 0 else 1
        slots = [width * 0.25, width * 0.75] if n_persons == 2 else [width * rng.uniform(0.35, 0.65)]
        for cx in slots:
            w, h = rng.uniform(110, 135), rng.uniform(280, 330)
            x0, y0 = cx - w / 2, rng.uniform(0.12, 0.2) * height
            kp = make_person(rng, x0, y0, w, h)
            persons.append(kp)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                                "bbox": [float(x0), float(y0), float(w), float(h)], "area": float(w * h),
                                "num_keypoints": 17,
                                "keypoints": [float(v) for p in kp for v in (p[0], p[1], 2)]})
        draw_persons(img, persons)
        name = f"{i + 1:06d}.png"
        cv2.imwrite(os.path.join(img_dir, name), img)
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
    ann = {"images": images, "annotations": annotations,
           "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": KEYPOINT_NAMES,
                           "skeleton": SKELETON_1BASED}]}
    path = os.path.join(root, "person_keypoints.json")
    with open(path, "w") as fh:
        json.dump(ann, fh)
    return path, img_dir, ann


class DotPoseModel(nn.Module):
    """Normalised RGB crops -> Gaussian heatmaps at the colour-coded dots (see the module docstring)."""

    def __init__(self, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), sigma=2.0, tau=0.12):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("codes", torch.tensor(CODES_RGB / 255.0, dtype=torch.float32))
        self.sigma, self.tau = sigma, tau
        perm = list(range(17))
        for a, b in COCO_PAIRS:
            perm[a], perm[b] = b, a
        self.register_buffer("perm", torch.tensor(perm))
        self.cfg = {"NUM_JOINTS": 17}

    def forward(self, x):
        n, _, h, w = x.shape
        rgb = (x.float() * self.std + self.mean)  # 0..1
        d2 = ((rgb.unsqueeze(1) - self.codes.view(1, 17, 3, 1, 1)) ** 2).sum(2)  # (N, 17, H, W)
        match = torch.clamp(1 - d2.sqrt() / self.tau, min=0)
        mass = match.sum((2, 3))
        ys = torch.arange(h, dtype=torch.float32, device=x.device).view(1, 1, h, 1)
        xs = torch.arange(w, dtype=torch.float32, device=x.device).view(1, 1, 1, w)
        u = (match * xs).sum((2, 3)) / mass.clamp(min=1e-6)
        v = (match * ys).sum((2, 3)) / mass.clamp(min=1e-6)
        present = mass > 0.5
        # mirrored crop: the left shoulder (5) is left of the right one (6) -> swap the labels of every pair
        mirrored = (u[:, 5] < u[:, 6]) & present[:, 5] & present[:, 6]
        swap = torch.where(mirrored.unsqueeze(1), self.perm.unsqueeze(0), torch.arange(17, device=x.device).unsqueeze(0))
        u, v, present = u.gather(1, swap), v.gather(1, swap), present.gather(1, swap)
        hh, hw = h // 4, w // 4
        gy = torch.arange(hh, dtype=torch.float32, device=x.device).view(1, 1, hh, 1)
        gx = torch.arange(hw, dtype=torch.float32, device=x.device).view(1, 1, 1, hw)
        cu, cv = (u / 4).view(n, 17, 1, 1), (v / 4).view(n, 17, 1, 1)
        heat = torch.exp(-((gx - cu) ** 2 + (gy - cv) ** 2) / (2 * self.sigma ** 2))
        return (heat * present.view(n, 17, 1, 1)).to(x.dtype)
