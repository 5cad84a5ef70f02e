"""What the command-line tests share: the usage-error assertion (exit 2, argparse's usage, one error line naming
the option, no traceback) and a tiny checkpoint."""
import os

import pytest
import torch

from hrnet_fast import cli

from _golden import TINY_YAML


def usage_error(capsys, argv, expected):
    """``hrnet-fast argv`` exits 2 with the usage and one last line ``hrnet-fast CMD: error: ...expected...``;
    progress lines (``[hrnet-fast] building ...``) may come first. Returns that line."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    rest = "\n".join(line for line in err.splitlines() if not line.startswith("[hrnet-fast] "))
    assert "Traceback" not in rest and rest.startswith("usage: hrnet-fast"), err
    last = rest.strip().splitlines()[-1]
    assert last.startswith(f"hrnet-fast {argv[0]}: error: ") and expected in last, last
    return last


def tiny_checkpoint(folder, name="tiny.pth", seed=0):
    """A state dict of the tiny test config with realistic random weights, saved in ``folder``; its path."""
    import hrnet_fast
    from hrnet_fast.models.init import realistic_random_init

    model = hrnet_fast.pose_hrnet(TINY_YAML)
    realistic_random_init(model, image_hw=(128, 96), seed=seed, batches=1, batch_size=2)
    path = os.path.join(str(folder), name)
    torch.save(model.state_dict(), path)
    return path


def listing(folder):
    """Every file under ``folder`` (relative paths, sorted): a leftover temporary file shows here."""
    out = []
    for base, _, files in os.walk(str(folder)):
        out.extend(os.path.relpath(os.path.join(base, f), str(folder)) for f in files)
    return sorted(out)
