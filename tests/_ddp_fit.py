"""Run by tests/test_training_ddp.py under torchrun (one process per rank, gloo): fit() in float64 on the CPU.

    torchrun --standalone --nproc_per_node 2 tests/_ddp_fit.py ANN IMAGES OUT EXPERIMENT.json STEPS BATCH
Rank 0 writes OUT/records.json (fit's records) besides the run directory's files."""
import json
import os
import sys

import torch

from hrnet_fast.training.fit import fit


def main():
    ann, images, out, exp_path, steps, batch = sys.argv[1:7]
    torch.set_num_threads(1)  # two processes on a 2-core machine
    with open(exp_path) as fh:
        exp = json.load(fh)
    records = fit(exp, ann, images, out, dtype=torch.float64, max_steps=int(steps), batch=int(batch), workers=0,
                  log_every=1, no_progress=True, val_every=0, device="cpu")
    if int(os.environ["RANK"]) == 0:
        with open(os.path.join(out, "records.json"), "w") as fh:
            json.dump(records, fh)


if __name__ == "__main__":
    main()
