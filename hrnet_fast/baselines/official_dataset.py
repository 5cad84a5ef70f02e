"""The official COCO keypoint training samples, in numpy + OpenCV: the oracle of the training data tests
(``tests/test_training_data.py``, ``tests/test_training_augment.py``) and the loader of the official step in the
training benchmark.

From leoxiaobin/deep-high-resolution-net.pytorch, as written (Python 3, numpy >= 1.24: ``np.float`` is gone and
is ``float`` here, which is what it aliased):

- ``lib/dataset/coco.py:136-208``: ``_load_coco_keypoint_annotations`` and ``_load_coco_keypoint_annotation_kernal``
  (box sanitising, persons only, no ``max(keypoints) == 0``, ``vis = min(v, 1)``), ``coco.py:210-229``
  ``_box2cs`` / ``_xywh2cs``, ``coco.py:90-103`` (flip pairs, body parts, joints weight);
- ``lib/dataset/JointsDataset.py:65-108`` ``half_body_transform`` and ``JointsDataset.py:113-198``
  ``__getitem__`` (read, half body, scale, rotation, flip, ``get_affine_transform`` + ``cv2.warpAffine``, the
  joints' mapping, ``generate_target``);
- ``lib/utils/transforms.py:32-46`` ``fliplr_joints``, ``:57-95`` ``get_affine_transform`` (with OpenCV's own
  ``getAffineTransform``) and ``affine_transform``.

The random draws go through ``np.random.rand``, ``np.random.randn`` and ``random.random``, looked up at call
time, in the official order and under the official conditions, so that a test can script them (monkeypatch the
three functions). ``generate_target`` is :func:`hrnet_fast.baselines.official_targets.generate_target`.

Differences, none in what is computed: ``pycocotools.coco.COCO`` is replaced by :class:`CocoIndex` (the five
look-ups the kernel makes, in pycocotools' order); an image's path is ``image_dir/file_name`` (the official
``image_path_from_index`` rebuilds ``images/train2017/%012d.jpg`` from the id); ``__getitem__`` returns the
warped BGR/RGB uint8 array as ``input`` when no ``transform`` is given (the official code always passes
``ToTensor`` + ``Normalize``).
"""
from __future__ import annotations

import copy
import json
import os
import random
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from . import official_numpy
from .official_pipeline import xywh2cs

COCO_FLIP_PAIRS = [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]]  # coco.py:91-92
UPPER_BODY_IDS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)  # coco.py:94
LOWER_BODY_IDS = (11, 12, 13, 14, 15, 16)  # coco.py:95
JOINTS_WEIGHT = np.array([1., 1., 1., 1., 1., 1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1., 1.2, 1.2, 1.5, 1.5],
                         dtype=np.float32).reshape((17, 1))  # coco.py:97-103


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - the callers skip without OpenCV
        raise ImportError("the official dataset needs OpenCV: pip install opencv-python-headless") from exc
    return cv2


class CocoIndex:
    """What ``_load_coco_keypoint_annotation_kernal`` reads of ``pycocotools.coco.COCO``, in its order: images in
    the file's order (``getImgIds``), each image's annotations in the file's order (``imgToAnns``),
    ``getAnnIds(iscrowd=False)`` keeping ``ann['iscrowd'] == False``, categories in the file's order."""

    def __init__(self, dataset: Dict):
        self.dataset = dataset
        self.imgs = {img["id"]: img for img in dataset.get("images", [])}
        self.anns = {ann["id"]: ann for ann in dataset.get("annotations", [])}
        self.cats = {cat["id"]: cat for cat in dataset.get("categories", [])}
        self.img_to_anns: Dict[int, List[Dict]] = {}
        for ann in dataset.get("annotations", []):
            self.img_to_anns.setdefault(ann["image_id"], []).append(ann)

    def getImgIds(self) -> List[int]:
        return list(self.imgs.keys())

    def loadImgs(self, ids) -> List[Dict]:
        return [self.imgs[i] for i in (ids if isinstance(ids, list) else [ids])]

    def getAnnIds(self, imgIds, iscrowd=None) -> List[int]:
        ids = imgIds if isinstance(imgIds, list) else [imgIds]
        anns = [a for i in ids if i in self.img_to_anns for a in self.img_to_anns[i]]
        return [a["id"] for a in anns if iscrowd is None or a["iscrowd"] == iscrowd]

    def loadAnns(self, ids) -> List[Dict]:
        return [self.anns[i] for i in ids]

    def getCatIds(self) -> List[int]:
        return list(self.cats.keys())

    def loadCats(self, ids) -> List[Dict]:
        return [self.cats[i] for i in ids]


def fliplr_joints(joints, joints_vis, width, matched_parts):
    """transforms.py:32-46."""
    # Flip horizontal
    joints[:, 0] = width - joints[:, 0] - 1

    # Change left-right parts
    for pair in matched_parts:
        joints[pair[0], :], joints[pair[1], :] = \
            joints[pair[1], :], joints[pair[0], :].copy()
        joints_vis[pair[0], :], joints_vis[pair[1], :] = \
            joints_vis[pair[1], :], joints_vis[pair[0], :].copy()

    return joints*joints_vis, joints_vis


def get_affine_transform(center, scale, rot, output_size, shift=np.array([0, 0], dtype=np.float32), inv=0):
    """transforms.py:57-89 (:func:`hrnet_fast.baselines.official_numpy.get_affine_transform`, the one port of it),
    solved with OpenCV's own ``cv2.getAffineTransform`` as the official code does."""
    return official_numpy.get_affine_transform(center, scale, rot, output_size, shift, inv,
                                               solve=_cv2().getAffineTransform)


def affine_transform(pt, t):
    """transforms.py:92-95."""
    new_pt = np.array([pt[0], pt[1], 1.]).T
    new_pt = np.dot(t, new_pt)
    return new_pt[:2]


class OfficialCocoKeypoints:
    """``COCODataset`` (train, ground-truth boxes) with the official config's values as arguments.

    Args:
        ann_file: a COCO keypoint annotation file (path) or its loaded dict.
        image_dir: the folder of the images (``file_name`` is joined to it).
        image_size, heatmap_size: ``MODEL.IMAGE_SIZE`` / ``MODEL.HEATMAP_SIZE``, ``[W, H]`` as the config writes.
        The rest: ``MODEL.SIGMA``, ``DATASET.SCALE_FACTOR``, ``ROT_FACTOR``, ``FLIP``, ``NUM_JOINTS_HALF_BODY``,
        ``PROB_HALF_BODY``, ``COLOR_RGB``, ``LOSS.USE_DIFFERENT_JOINTS_WEIGHT``; ``is_train`` as the official flag;
        ``transform`` the official ``transforms.Compose`` (None: ``input`` is the warped uint8 array).
    """

    def __init__(self, ann_file, image_dir: str, image_size: Sequence[int] = (192, 256),
                 heatmap_size: Sequence[int] = (48, 64), sigma: float = 2, scale_factor: float = 0.35,
                 rotation_factor: float = 45, flip: bool = True, num_joints_half_body: int = 8,
                 prob_half_body: float = 0.3, color_rgb: bool = True, use_different_joints_weight: bool = False,
                 is_train: bool = True, transform: Optional[Callable] = None):
        # JointsDataset.py:29-57, coco.py:63-66 and 90-105 (values from the config arguments)
        self.num_joints = 17
        self.pixel_std = 200
        self.flip_pairs = COCO_FLIP_PAIRS
        self.parent_ids = None
        self.upper_body_ids = UPPER_BODY_IDS
        self.lower_body_ids = LOWER_BODY_IDS
        self.joints_weight = JOINTS_WEIGHT
        self.is_train = is_train
        self.data_format = "jpg"
        self.scale_factor = scale_factor
        self.rotation_factor = rotation_factor
        self.flip = flip
        self.num_joints_half_body = num_joints_half_body
        self.prob_half_body = prob_half_body
        self.color_rgb = color_rgb
        self.target_type = "gaussian"
        self.image_size = np.array(image_size)
        self.heatmap_size = np.array(heatmap_size)
        self.sigma = sigma
        self.use_different_joints_weight = use_different_joints_weight
        self.transform = transform
        self.image_width = image_size[0]
        self.image_height = image_size[1]
        self.aspect_ratio = self.image_width * 1.0 / self.image_height
        if isinstance(ann_file, dict):
            dataset = ann_file
        else:
            with open(ann_file) as fh:
                dataset = json.load(fh)
        self.image_dir = image_dir
        self.coco = CocoIndex(dataset)
        # coco.py:71-83
        cats = [cat['name'] for cat in self.coco.loadCats(self.coco.getCatIds())]
        self.classes = ['__background__'] + cats
        self.num_classes = len(self.classes)
        self._class_to_ind = dict(zip(self.classes, range(self.num_classes)))
        self._class_to_coco_ind = dict(zip(cats, self.coco.getCatIds()))
        self._coco_ind_to_class_ind = dict(
            [(self._class_to_coco_ind[cls], self._class_to_ind[cls]) for cls in self.classes[1:]])
        self.image_set_index = self.coco.getImgIds()  # coco.py:122-125
        self.db = self._load_coco_keypoint_annotations()

    def image_path_from_index(self, index) -> str:
        """The image's ``file_name`` under ``image_dir`` (the official coco.py:231-244 rebuilds it from the id)."""
        return os.path.join(self.image_dir, self.coco.loadImgs(index)[0]['file_name'])

    def _load_coco_keypoint_annotations(self) -> List[Dict]:
        """coco.py:136-141."""
        gt_db = []
        for index in self.image_set_index:
            gt_db.extend(self._load_coco_keypoint_annotation_kernal(index))
        return gt_db

    def _load_coco_keypoint_annotation_kernal(self, index) -> List[Dict]:
        """coco.py:143-208."""
        im_ann = self.coco.loadImgs(index)[0]
        width = im_ann['width']
        height = im_ann['height']

        annIds = self.coco.getAnnIds(imgIds=index, iscrowd=False)
        objs = self.coco.loadAnns(annIds)

        # sanitize bboxes
        valid_objs = []
        for obj in objs:
            x, y, w, h = obj['bbox']
            x1 = np.max((0, x))
            y1 = np.max((0, y))
            x2 = np.min((width - 1, x1 + np.max((0, w - 1))))
            y2 = np.min((height - 1, y1 + np.max((0, h - 1))))
            if obj['area'] > 0 and x2 >= x1 and y2 >= y1:
                obj['clean_bbox'] = [x1, y1, x2-x1, y2-y1]
                valid_objs.append(obj)
        objs = valid_objs

        rec = []
        for obj in objs:
            cls = self._coco_ind_to_class_ind[obj['category_id']]
            if cls != 1:
                continue

            # ignore objs without keypoints annotation
            if max(obj['keypoints']) == 0:
                continue

            joints_3d = np.zeros((self.num_joints, 3), dtype=float)
            joints_3d_vis = np.zeros((self.num_joints, 3), dtype=float)
            for ipt in range(self.num_joints):
                joints_3d[ipt, 0] = obj['keypoints'][ipt * 3 + 0]
                joints_3d[ipt, 1] = obj['keypoints'][ipt * 3 + 1]
                joints_3d[ipt, 2] = 0
                t_vis = obj['keypoints'][ipt * 3 + 2]
                if t_vis > 1:
                    t_vis = 1
                joints_3d_vis[ipt, 0] = t_vis
                joints_3d_vis[ipt, 1] = t_vis
                joints_3d_vis[ipt, 2] = 0

            center, scale = self._box2cs(obj['clean_bbox'][:4])
            rec.append({
                'image': self.image_path_from_index(index),
                'center': center,
                'scale': scale,
                'joints_3d': joints_3d,
                'joints_3d_vis': joints_3d_vis,
                'filename': '',
                'imgnum': 0,
            })

        return rec

    def _box2cs(self, box):
        """coco.py:210-212; ``_xywh2cs`` (coco.py:214-229) is :func:`official_pipeline.xywh2cs`."""
        x, y, w, h = box[:4]
        return xywh2cs(x, y, w, h, self.image_width, self.image_height, self.pixel_std)

    def half_body_transform(self, joints, joints_vis):
        """JointsDataset.py:65-108."""
        upper_joints = []
        lower_joints = []
        for joint_id in range(self.num_joints):
            if joints_vis[joint_id][0] > 0:
                if joint_id in self.upper_body_ids:
                    upper_joints.append(joints[joint_id])
                else:
                    lower_joints.append(joints[joint_id])

        if np.random.randn() < 0.5 and len(upper_joints) > 2:
            selected_joints = upper_joints
        else:
            selected_joints = lower_joints \
                if len(lower_joints) > 2 else upper_joints

        if len(selected_joints) < 2:
            return None, None

        selected_joints = np.array(selected_joints, dtype=np.float32)
        center = selected_joints.mean(axis=0)[:2]

        left_top = np.amin(selected_joints, axis=0)
        right_bottom = np.amax(selected_joints, axis=0)

        w = right_bottom[0] - left_top[0]
        h = right_bottom[1] - left_top[1]

        if w > self.aspect_ratio * h:
            h = w * 1.0 / self.aspect_ratio
        elif w < self.aspect_ratio * h:
            w = h * self.aspect_ratio

        scale = np.array([w * 1.0 / self.pixel_std, h * 1.0 / self.pixel_std], dtype=np.float32)

        scale = scale * 1.5

        return center, scale

    def __len__(self):
        return len(self.db)

    def __getitem__(self, idx):
        """JointsDataset.py:113-198 (the zip reader left out)."""
        cv2 = _cv2()
        db_rec = copy.deepcopy(self.db[idx])

        image_file = db_rec['image']
        filename = db_rec['filename'] if 'filename' in db_rec else ''
        imgnum = db_rec['imgnum'] if 'imgnum' in db_rec else ''

        data_numpy = cv2.imread(image_file, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)

        if self.color_rgb:
            data_numpy = cv2.cvtColor(data_numpy, cv2.COLOR_BGR2RGB)

        if data_numpy is None:
            raise ValueError('Fail to read {}'.format(image_file))

        joints = db_rec['joints_3d']
        joints_vis = db_rec['joints_3d_vis']

        c = db_rec['center']
        s = db_rec['scale']
        score = db_rec['score'] if 'score' in db_rec else 1
        r = 0

        if self.is_train:
            if (np.sum(joints_vis[:, 0]) > self.num_joints_half_body
                    and np.random.rand() < self.prob_half_body):
                c_half_body, s_half_body = self.half_body_transform(joints, joints_vis)

                if c_half_body is not None and s_half_body is not None:
                    c, s = c_half_body, s_half_body

            sf = self.scale_factor
            rf = self.rotation_factor
            s = s * np.clip(np.random.randn()*sf + 1, 1 - sf, 1 + sf)
            r = np.clip(np.random.randn()*rf, -rf*2, rf*2) \
                if random.random() <= 0.6 else 0

            if self.flip and random.random() <= 0.5:
                data_numpy = data_numpy[:, ::-1, :]
                joints, joints_vis = fliplr_joints(joints, joints_vis, data_numpy.shape[1], self.flip_pairs)
                c[0] = data_numpy.shape[1] - c[0] - 1

        trans = get_affine_transform(c, s, r, self.image_size)
        input = cv2.warpAffine(
            data_numpy,
            trans,
            (int(self.image_size[0]), int(self.image_size[1])),
            flags=cv2.INTER_LINEAR)

        if self.transform:
            input = self.transform(input)

        for i in range(self.num_joints):
            if joints_vis[i, 0] > 0.0:
                joints[i, 0:2] = affine_transform(joints[i, 0:2], trans)

        target, target_weight = self.generate_target(joints, joints_vis)

        meta = {
            'image': image_file,
            'filename': filename,
            'imgnum': imgnum,
            'joints': joints,
            'joints_vis': joints_vis,
            'center': c,
            'scale': s,
            'rotation': r,
            'score': score
        }

        # the official code wraps target and target_weight in torch.from_numpy (JointsDataset.py:183-184)
        return input, target, target_weight, meta

    def generate_target(self, joints, joints_vis):
        """JointsDataset.py:233-289, through :func:`hrnet_fast.baselines.official_targets.generate_target`."""
        from .official_targets import generate_target

        return generate_target(joints, joints_vis, self.image_size, self.heatmap_size, self.sigma,
                               joints_weight=self.joints_weight,
                               use_different_joints_weight=self.use_different_joints_weight)
