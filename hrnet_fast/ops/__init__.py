from .decode_heatmaps import COCO_FLIP_PAIRS, MPII_FLIP_PAIRS, decode_heatmaps, flip_merge  # noqa: E402,F401
