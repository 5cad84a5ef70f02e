from .pose_hrnet import BasicBlock, Bottleneck, ExchangeUnit, HighResolutionModule, PoseHighResolutionNet, pose_hrnet

__all__ = ["BasicBlock", "Bottleneck", "ExchangeUnit", "HighResolutionModule", "PoseHighResolutionNet", "pose_hrnet"]
