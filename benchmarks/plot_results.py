"""Plot the speed-ups recorded in benchmarks/results/*.json as one PNG.

    python benchmarks/plot_results.py [--out benchmarks/results/summary.png] [JSON ...]
    python benchmarks/plot_results.py --list [JSON ...]      # print the bars only (no matplotlib needed)

Reads `hrnet-fast bench` JSON files ({"meta", "results"}) and device_check.sh files ({"runs": {...}});
draws one horizontal bar per (device, dtype, section, batch, variant) with its speed-up over the
reference measured in the same run. Needs matplotlib.
"""
import argparse
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def _runs(path):
    doc = json.load(open(path))
    if "results" in doc:
        yield doc
    for run in doc.get("runs", {}).values():
        if isinstance(run, dict) and "results" in run:
            yield run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*")
    p.add_argument("--out", default=os.path.join(HERE, "results", "summary.png"))
    p.add_argument("--list", action="store_true", help="print the bars as text instead of plotting")
    args = p.parse_args(argv)
    files = args.files or sorted(glob.glob(os.path.join(HERE, "results", "*.json")))
    bars = []
    for f in files:
        for run in _runs(f):
            meta = run.get("meta", {})
            dev = meta.get("device_name", meta.get("device", "?"))
            for r in run["results"]:
                if "speedup" in r and "section" in r:
                    label = f"{r.get('dtype', meta.get('dtype', ''))} | {r['section']} b{r['batch']} | {r['variant']}"
                    bars.append((dev, label, r["speedup"]))
    if not bars:
        raise SystemExit("plot_results: no results with a speed-up found in " + ", ".join(files))
    if args.list:
        for dev, label, speedup in bars:
            print(f"{dev} | {label} | x{speedup:.2f}")
        print(f"{len(bars)} bars from {len(files)} file(s)")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    devices = sorted({b[0] for b in bars})
    if len(devices) == 1:  # one device: name it in the title, keep the bar labels short
        title = f"hrnet_fast vs reference on {devices[0]}"
        labels = [b[1] for b in bars][::-1]
    else:
        title = "hrnet_fast vs reference"
        labels = [f"{b[0][:24]} {b[1]}" for b in bars][::-1]
    values = [b[2] for b in bars][::-1]
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(bars) + 1.2))
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh(range(len(values)), values, color=colors)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    for i, v in enumerate(values):
        ax.text(v, i, f" x{v:.2f}", va="center", fontsize=7)
    ax.set_xlabel("speed-up over the reference, measured side by side in one run")
    ax.set_title(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(bars)} bars from {len(files)} file(s))")


if __name__ == "__main__":
    main()
