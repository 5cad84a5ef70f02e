"""Seeded COCO keypoint files for the training data and augmentation tests (on top of ``_synthetic.make_coco``).

``varied_coco`` gives the persons of ``make_coco`` varied visibility, so that the half-body rule meets every
branch (upper body, lower body, each fallback, too few joints); ``extras=True`` adds what the official cleaning
drops or keeps oddly: a crowd, a non-person, ``max(keypoints) == 0``, a box outside the image, ``area == 0``, a
clipped box of zero size (kept by the official code with scale 0, skipped by ``CocoKeypoints``) and a box of zero
width only (kept by both: the aspect-ratio rule widens it).
"""
import copy
import json
import os

import numpy as np

from _synthetic import make_coco

# visibility per person of make_coco(n_images=6): 9 persons
_HIDE = [
    [],                                   # all 17 visible
    list(range(0, 8)),                    # upper 3 (8, 9, 10) + lower 6: 9 visible, both sets > 2
    [13, 14, 15, 16],                     # upper 11 + lower 2 (11, 12): lower fallback to upper
    list(range(0, 9)) + [15, 16],         # upper 2 (9, 10) + lower 4: upper fallback to lower
    list(range(0, 12)),                   # 5 visible: no half body
    [0, 3, 4],                            # 14 visible
    [],
    list(range(5, 17)),                   # upper 5 only: 5 visible
    [1, 2],
]


def varied_coco(root, extras=False, seed=0):
    """Writes ``root/images`` and ``root/person_keypoints.json``; returns (ann path, image dir, ann dict)."""
    path, img_dir, ann = make_coco(root, n_images=6, seed=seed)
    ann = copy.deepcopy(ann)
    rng = np.random.default_rng(seed + 100)
    for i, a in enumerate(ann["annotations"]):
        kp = np.array(a["keypoints"], dtype=np.float64).reshape(17, 3)
        kp[_HIDE[i % len(_HIDE)], 2] = 0
        kp[kp[:, 2] == 0, :2] = 0  # COCO writes (0, 0, 0) for an unlabelled joint
        kp[(kp[:, 2] > 0) & (rng.random(17) < 0.3), 2] = 1  # labelled, occluded: still visible after min(v, 1)
        a["keypoints"] = [float(v) for v in kp.reshape(-1)]
        a["num_keypoints"] = int((kp[:, 2] > 0).sum())
    if extras:
        ann["categories"].append({"id": 2, "name": "dog", "supercategory": "animal"})
        base = ann["annotations"][0]
        nid = 1000

        def add(**kw):
            nonlocal nid
            a = copy.deepcopy(base)
            a.update(id=nid, **kw)
            nid += 1
            ann["annotations"].append(a)

        add(iscrowd=1)
        add(category_id=2)
        add(keypoints=[0.0] * 51, num_keypoints=0)
        add(bbox=[700.0, 20.0, 50.0, 60.0])          # x1 = 700 > W - 1: dropped by the official cleaning
        add(area=0.0)
        add(bbox=[100.0, 100.0, 0.5, 0.8])           # clipped to 0 x 0: official scale 0
        add(bbox=[100.0, 100.0, 0.0, 80.0])          # zero width only: the aspect rule widens it
        add(bbox=[-30.0, -10.0, 200.0, 600.0], image_id=2)  # clipped at the image's borders
    path = os.path.join(root, "person_keypoints_varied.json")
    with open(path, "w") as fh:
        json.dump(ann, fh)
    return path, img_dir, ann
