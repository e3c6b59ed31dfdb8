"""``edgemed real-ecg``: the device runtime on real recordings (no labels: detection and rhythm only);
``edgemed noise-stress``: real ECG under real noise, and real signals that are not ECG, readability check off / on;
``edgemed export-record``: a vendored MIT-BIH record (or an excerpt) as a signal file for ``edgemed run``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import click

from exporters._files import atomic_destination
from pipeline.cli.logging_setup import configure_logging
from pipeline.cli.parameters import FiniteFloatRange, OutputPath
from pipeline.errors import UsageError
from runtime.errors import EdgemedError


@click.command("real-ecg")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--output",
    type=OutputPath(folder=False),
    default="benchmarks/results/real_ecg.json",
    show_default=True,
    help="Where the figures are written (JSON).",
)
def real_ecg_command(bundle: str, output: str) -> None:
    """Run BUNDLE through the device stream on the real ECG recordings biosignalsnotebooks ships.

    Reports R-peak sensitivity and positive predictivity against the R-peaks the acquisition software found
    (150 ms tolerance, AAMI EC57 matching), per-minute heart-rate agreement, and the beat-class
    distribution. The recordings carry no beat labels, so no class accuracy is claimed.
    """
    from pipeline.validation.real_ecg import evaluate_real_ecg

    configure_logging(verbose=False)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    try:
        report = evaluate_real_ecg(Path(bundle), Path(output))
    except UsageError as error:
        raise click.UsageError(str(error)) from error
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    headline = {key: value for key, value in report.items() if key != "files"}
    click.echo(json.dumps(headline, indent=2))
    for name, figures in report["files"].items():
        keys = ("beats", "class_distribution", "sensitivity", "positive_predictivity", "skipped")
        shown = {key: figures.get(key) for key in keys}
        click.echo(f"{name}: {json.dumps({key: value for key, value in shown.items() if value is not None})}")
    click.echo(f"\nwritten to {output}")


@click.command("noise-stress")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--output", type=OutputPath(folder=False), default="benchmarks/results/noise_stress.json",
              show_default=True, help="Where the figures are written (JSON; the plot goes beside it as .png).")
@click.option("--snr", "snrs", type=FiniteFloatRange(min=-30, max=60), multiple=True,
              help="Signal-to-noise ratio in dB (repeat the option; default 12, 6 and 0).")
@click.option("--records", default=None, help="Comma-separated MIT-BIH records of the vendored subset (default: all).")
def noise_stress_command(bundle: str, output: str, snrs: tuple[float, ...], records: str | None) -> None:
    """Does BUNDLE's stream know when it cannot judge? Real MIT-BIH ECG with real PLUX noise added (muscle,
    electrode motion, electromagnetic; the NST's method and SNR) and real PLUX signals that are not ECG, each with
    the stream's readability check off and on: beats classed, PVCs silently missed, false PVCs per hour.
    About 3 minutes on 2 cores."""
    from pipeline.benchmark.noise_stress import (
        NoiseStressConfig,
        condition_line,
        evaluate_noise_stress,
        recording_line,
    )
    from pipeline.benchmark.noise_stress_plot import plot_noise_stress
    from pipeline.cli.progress import ProgressBars
    from pipeline.scenarios.ecg_pvc.mitdb import RECORD_IDS

    configure_logging(verbose=False)
    chosen = None
    if records is not None:
        chosen = tuple(name.strip() for name in records.split(",") if name.strip())
        unknown = [name for name in chosen if name not in RECORD_IDS]
        if not chosen or unknown:
            raise click.BadParameter(f"{records!r}: expected records of the vendored subset "
                                     f"({', '.join(RECORD_IDS)}), comma-separated", param_hint="--records")
    config = NoiseStressConfig(snrs_db=tuple(snrs) or NoiseStressConfig().snrs_db, records=chosen)
    try:
        bars = ProgressBars()
        report = evaluate_noise_stress(Path(bundle), config, progress=bars)
        bars.close()
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    destination = Path(output)
    with atomic_destination(destination) as temporary:
        temporary.write_text(json.dumps(report, indent=2) + "\n")
    picture = plot_noise_stress(report, destination.with_suffix(".png"))
    for line in [*map(condition_line, report["conditions"]), *map(recording_line, report["real_recordings"])]:
        click.echo(line)
    click.echo(f"written to {destination} and {picture}")


@click.command("export-record")
@click.argument("record")
@click.option("--output", type=OutputPath(folder=False, path_type=Path), required=True,
              help="Signal file to write: .npy (float32 mV) or .csv (one 'ecg' column in mV).")
@click.option("--start-s", type=FiniteFloatRange(min=0), default=0.0, show_default=True,
              help="Where the excerpt starts, in seconds.")
@click.option("--seconds", type=FiniteFloatRange(min=1, min_open=False), default=None,
              help="Excerpt length in seconds (default: to the end of the record).")
@click.option("--annotations", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the reference beats (seconds from the excerpt start, V or not) as JSON.")
def export_record_command(record: str, output: Path, start_s: float, seconds: float | None,
                          annotations: Path | None) -> None:
    """Write MIT-BIH RECORD of the vendored subset (its first lead, 360 Hz, mV) as a signal file.

    For example `edgemed export-record 119 --output record.npy`, then
    `edgemed run bundles/ecg-pvc --input record.npy --sample-rate 360 --trust-store …`. The data is the MIT-BIH
    Arrhythmia Database (PhysioNet, ODC-By 1.0): keep its attribution with anything you share.
    """
    import numpy as np

    from pipeline.scenarios.ecg_pvc.mitdb import RECORD_IDS, excerpt, load_records
    from pipeline.scenarios.ecg_pvc.scenario import RecordSplits, held_out_leads

    if record not in RECORD_IDS:
        raise click.BadParameter(f"{record!r} is not in the vendored subset; expected one of {', '.join(RECORD_IDS)}",
                                 param_hint="RECORD")
    if output.suffix.lower() not in (".npy", ".csv"):
        raise click.BadParameter(f"{output.name}: expected a .npy or .csv file name", param_hint="--output")
    if annotations is not None and annotations.resolve() == output.resolve():
        raise click.BadParameter("the annotations would overwrite the signal file: give them another name",
                                 param_hint="--annotations")
    try:
        (loaded,) = load_records([record])
        part = excerpt(loaded, seconds, start_s)
    except UsageError as error:
        raise click.UsageError(str(error)) from error
    except EdgemedError as error:
        raise click.ClickException(str(error)) from error
    document = None if annotations is None else json.dumps({
        "record": record, "lead": part.lead, "sample_rate_hz": part.sample_rate_hz, "start_s": start_s,
        "beats_s": [round(index / part.sample_rate_hz, 4) for index in part.beat_indices.tolist()],
        "is_v": part.is_pvc.tolist(),
        "source": "MIT-BIH Arrhythmia Database v1.0.0 (PhysioNet), ODC-By 1.0",
    }, indent=1)
    try:  # both written to temporary files beside them, renamed into place once both are complete
        with contextlib.ExitStack() as stack:
            signal_file = stack.enter_context(atomic_destination(output))
            with open(signal_file, "wb") as handle:  # a handle: numpy names the file as given (U.NPY stays so)
                if output.suffix.lower() == ".npy":
                    np.save(handle, part.signal_mv.astype(np.float32))
                else:  # the header names the lead ('MLII'), which the device checks against the bundle's
                    values = "\n".join(f"{value:.3f}" for value in part.signal_mv.tolist())
                    handle.write(f"{part.lead}\n{values}\n".encode())
            if annotations is not None:
                annotation_file = stack.enter_context(atomic_destination(annotations))
                annotation_file.write_text(document)
    except OSError as error:
        raise click.ClickException(f"cannot write {error.filename or output}: {error.strerror or error} (nothing "
                                   "was written; check the folder)") from None
    click.echo(f"MIT-BIH {record} (lead {part.lead}): {part.duration_s:.1f} s at {part.sample_rate_hz:g} Hz, "
               f"{part.beat_indices.size} reference beats, {int(part.is_pvc.sum())} V → {output}"
               + (f" (annotations → {annotations})" if annotations else ""))
    click.echo(f"run it: edgemed run BUNDLE --input {output} --sample-rate {part.sample_rate_hz:g} "
               "--trust-store TRUST_STORE (make build's: .edgemed-keys/dev/trust-store)")
    validated = held_out_leads(RecordSplits())
    if part.lead not in validated:
        click.echo(f"note: lead {part.lead}: the shipped ecg-pvc bundle is validated on {' and '.join(validated)} "
                   "only; "
                   + ("it refuses this CSV (its header names the lead)" if output.suffix.lower() == ".csv" else
                      f"an .npy does not carry the lead: run it with --lead {part.lead} and the device refuses it; "
                      "without, it runs unchecked and what it says is no validated figure"))
