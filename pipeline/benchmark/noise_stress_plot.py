"""The noise stress test as a picture: per noise source, PVCs silently missed and false PVCs per hour against SNR,
with the stream's readability check off and on (``noise_stress.png``)."""

from __future__ import annotations

import os
from pathlib import Path

PANELS = (("v_silently_missed_share", "PVCs classed as normal (share of PVCs)"),
          ("false_v_per_hour", "false PVC calls per noisy hour"),
          ("classed_share", "beats classed (share of beats)"))


def plot_noise_stress(report: dict, path: Path) -> Path:
    """Draw ``report`` (``evaluate_noise_stress``'s document) into ``path`` (PNG, temporary file then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["conditions"]
    sources = [name for name in dict.fromkeys(row["noise"] for row in rows) if name != "none"]
    figure, axes = plt.subplots(len(PANELS), max(1, len(sources)), figsize=(4 * max(1, len(sources)), 8),
                                squeeze=False, sharex=True)
    for column, source in enumerate(sources):
        for line, (key, label) in enumerate(PANELS):
            axis = axes[line][column]
            for check, style in ((False, "o--"), (True, "s-")):
                points = sorted((row["snr_db"], row["noisy"][key]) for row in rows
                                if row["noise"] == source and row["check"] is check and row["noisy"][key] is not None)
                axis.plot([snr for snr, _ in points], [value for _, value in points], style,
                          label=f"readability check {'on' if check else 'off'}")
            clean = [row["noisy"][key] for row in rows if row["noise"] == "none" and row["check"]]
            if clean and clean[0] is not None:
                axis.axhline(clean[0], color="grey", linewidth=0.8, label="no noise added (check on)")
            axis.set_title(f"{source}: {label}", fontsize=8)
            axis.invert_xaxis()
            axis.grid(True, alpha=0.3)
            if line == len(PANELS) - 1:
                axis.set_xlabel("SNR (dB)")
    axes[0][0].legend(fontsize=7)
    figure.suptitle("Real MIT-BIH ECG + real PLUX noise (NST method), inside the noisy stretches", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    figure.savefig(temporary, format="png", dpi=100)
    plt.close(figure)
    os.replace(temporary, path)
    return path
