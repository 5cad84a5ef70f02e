"""The README's quick start runs as written (the checkpoint path pointed at a file saved here)."""
import os
import re

import torch

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def test_readme_quick_start_runs(tmp_path):
    import hrnet_fast

    block = re.search(r"```python\n(.*?)```", open(README).read(), re.S).group(1)
    ckpt = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save(hrnet_fast.pose_hrnet("w32_256x192").state_dict(), ckpt)
    assert '"pose_hrnet_w32_256x192.pth"' in block
    scope = {}
    exec(compile(block.replace('"pose_hrnet_w32_256x192.pth"', repr(str(ckpt))), "README.md", "exec"), scope)
    assert scope["heatmaps"].shape == (8, 17, 64, 48)
    assert scope["coords"].shape == (8, 17, 2) and scope["maxvals"].shape == (8, 17, 1)
    assert torch.isfinite(scope["coords"]).all()
