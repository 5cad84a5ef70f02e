"""What the training tests share: the tiny network as a whole experiment (COLOR_RGB set: no warning), and small
synthetic COCO sets (tests/_synthetic.py: colour-coded dots, 640x480 PNGs), made once per session."""
import os

import yaml

from _golden import TINY_YAML
from _synthetic import make_coco


def tiny_experiment(**dataset):
    """The tiny network's experiment dict: MODEL from tests/data/tiny_hrnet.yaml, DATASET.COLOR_RGB true (the
    official COCO setting) plus ``dataset``; every other key the official default."""
    with open(TINY_YAML) as fh:
        doc = yaml.safe_load(fh)
    doc["DATASET"] = {"COLOR_RGB": True, **dataset}
    return doc


def coco_set(factory, n_images: int, seed: int = 0):
    """``(ann path, image dir, ann dict)`` of a synthetic set of ``n_images`` images (1.5 persons each on average)
    under ``factory`` (pytest's tmp_path_factory), made once per (n_images, seed)."""
    root = str(factory.getbasetemp() / f"coco_{n_images}_{seed}")
    if os.path.exists(os.path.join(root, "person_keypoints.json")):
        import json

        with open(os.path.join(root, "person_keypoints.json")) as fh:
            return os.path.join(root, "person_keypoints.json"), os.path.join(root, "images"), json.load(fh)
    return make_coco(root, n_images=n_images, seed=seed)
