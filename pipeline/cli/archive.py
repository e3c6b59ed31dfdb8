"""``edgemed make-archive``: an archive of annotated MIT-BIH excerpts (and corrupt files on request);
``edgemed validate-archive``: a bundle over every recording of an archive on Ray Data;
``edgemed bench-archive``: how that throughput scales with Ray workers.

The library is ``pipeline.archive``; this module wires the vendored data, the options and the progress bar to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipeline.cli.logging_setup import configure_logging
from pipeline.cli.parameters import FiniteFloatRange, OutputPath
from pipeline.cli.progress import ProgressBars
from pipeline.errors import UsageError
from runtime.errors import EdgemedError
from runtime.readers import SAMPLE_RATE_RANGE_HZ


def _fail(error: EdgemedError) -> click.ClickException:
    """Usage errors exit 2, every other refusal 1."""
    return click.UsageError(str(error)) if isinstance(error, UsageError) else click.ClickException(str(error))


def _split_of(record: str) -> str:
    from pipeline.scenarios.ecg_pvc.scenario import EcgPvcDataConfig

    splits = EcgPvcDataConfig().records
    return next((name for name in ("train", "validation", "calibration", "test") if record in splits.of(name)),
                "unused")


# what one second of excerpt costs on disk: 360 samples (float32 in .npy; up to "-12.345\n" in .csv) and its
# annotations (the vendored records' JSON sidecars average ~100 bytes a second; 160 covers the fastest rhythms)
SIGNAL_BYTES_PER_SAMPLE = {"npy": 4, "csv": 8}
ANNOTATION_BYTES_PER_SECOND = 160
WORKERS_PER_CPU = 2  # a local Ray's workers beyond this many per core only queue (each holds ~150 MB)


def _check_free_space(output: Path, recordings: int, seconds: float, signal_format: str) -> None:
    """Refuse an archive the disk cannot hold (estimated from its length and format) before a byte is written."""
    import shutil

    per_second = 360 * SIGNAL_BYTES_PER_SAMPLE[signal_format] + ANNOTATION_BYTES_PER_SECOND
    needed = int(recordings * seconds * per_second * 1.1)  # +10 %: indexes, headers, the file system
    existing = next(folder for folder in (output, *output.absolute().parents) if folder.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise click.BadParameter(f"{recordings} recordings of {seconds:g} s need about {needed / 2**30:.1f} GiB and "
                                 f"{existing} has {free / 2**30:.1f} GiB free; ask for fewer --recordings or shorter "
                                 "--seconds, or write to a larger disk", param_hint="--recordings")


def _check_local_workers(counts: tuple[int, ...], ray_address: str | None) -> None:
    """On a local Ray (no --ray-address), refuse more workers than this machine's cores can run."""
    import os

    limit = WORKERS_PER_CPU * (os.cpu_count() or 1)
    if ray_address is None and max(counts) > limit:
        raise click.BadParameter(f"{max(counts)} workers on this machine's {os.cpu_count()} cores: a local Ray "
                                 f"starts a process for each (about 150 MB apiece); at most {limit} here "
                                 f"({WORKERS_PER_CPU} per core)", param_hint="--workers")


@click.command("make-archive")
@click.option("--output", type=OutputPath(folder=True, path_type=Path), required=True,
              help="The archive folder to write (new or empty).")
@click.option("--recordings", type=click.IntRange(min=1, max=100_000), default=200, show_default=True,
              help="How many excerpts, spread evenly over the records.")
@click.option("--seconds", type=FiniteFloatRange(min=10.0, max=1800.0), default=300.0, show_default=True,
              help="Length of every excerpt (excerpts of one record overlap when they do not fit side by side).")
@click.option("--records", default=None, help="Comma-separated MIT-BIH records of the vendored subset (default: all).")
@click.option("--format", "signal_format", type=click.Choice(["npy", "csv"]), default="npy", show_default=True,
              help="Signal files: float32 .npy in mV, or .csv with one 'ecg' column.")
@click.option("--corrupt", type=click.IntRange(min=0, max=100), default=0, show_default=True,
              help="Also write this many deliberately bad files (truncated .npy, text .csv, broken annotations, "
                   "missing file), for tests and demonstrations.")
def make_archive_command(output: Path, recordings: int, seconds: float, records: str | None, signal_format: str,
                         corrupt: int) -> None:
    """Write an archive of annotated excerpts of the vendored MIT-BIH records (360 Hz, first lead, mV).

    Every excerpt gets a beat-annotation sidecar (reference beats, V or non-V) and an entry in archive.json whose
    group is its source record and that record's role in the shipped ecg-pvc build (train / validation /
    calibration / test): only the test records are held out from the model. The data is the MIT-BIH Arrhythmia
    Database (PhysioNet, ODC-By 1.0): keep its attribution with anything you share.
    """
    import numpy as np

    from pipeline.archive.generate import ArchiveRecording, SignalFormat, overlap_s, plan_excerpts, write_archive
    from pipeline.archive.layout import NEGATIVE_LABEL, POSITIVE_LABEL
    from pipeline.scenarios.ecg_pvc.mitdb import excerpt, load_records, provenance

    configure_logging(verbose=False)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise click.BadParameter(f"{output} already exists and is not an empty folder; choose a new one",
                                 param_hint="--output")
    _check_free_space(output, recordings, seconds, signal_format)
    wanted = [name.strip() for name in records.split(",") if name.strip()] if records is not None else None
    if wanted == []:
        raise click.BadParameter(f"{records!r} names no record. Expected: comma-separated MIT-BIH record names, e.g. "
                                 "100,119. Fix: name some records, or leave --records out for all of them.",
                                 param_hint="--records")
    try:
        loaded = {record.record_id: record for record in load_records(wanted)}
        plans = plan_excerpts({name: record.duration_s for name, record in loaded.items()}, recordings, seconds)
        overlap = overlap_s(plans)
        used = [name for name in loaded if any(plan.source == name for plan in plans)]  # fewer than loaded: few plans

        def cut():
            numbers: dict[str, int] = {}
            for plan in plans:
                number = numbers[plan.source] = numbers.get(plan.source, -1) + 1
                part = excerpt(loaded[plan.source], plan.seconds, plan.start_s)
                split = _split_of(plan.source)
                yield ArchiveRecording(
                    name=f"mitdb-{plan.source}-{number:03d}", signal=part.signal_mv, sample_rate_hz=part.sample_rate_hz,
                    beat_samples=part.beat_indices,
                    labels=[POSITIVE_LABEL if is_v else NEGATIVE_LABEL for is_v in part.is_pvc.tolist()],
                    group=f"{plan.source} ({split})",
                    extra={"source_record": plan.source, "start_s": plan.start_s, "lead": part.lead, "split": split})

        note = (f"{len(plans)} excerpts of {seconds:g} s from {len(used)} MIT-BIH records; excerpts of one record "
                + (f"overlap by up to {overlap:g} s, so beats are counted more than once and recordings of one "
                   "record are not independent (the bootstrap over recordings is optimistic; read the per-group "
                   "figures)" if overlap > 0 else "do not overlap")
                + ". Groups name each record's role in the shipped ecg-pvc build: only 'test' records are held out "
                  "from the model.")
        source = {**provenance(), "excerpts": {"count": len(plans), "seconds": seconds, "max_overlap_s": overlap,
                                               "records": used}, "note": note}
        description = (f"{len(plans)} annotated {seconds:g}-s excerpts of the vendored MIT-BIH subset"
                       + (f", plus {corrupt} deliberately corrupt file(s)" if corrupt else ""))
        index = write_archive(output, cut(), description, source, SignalFormat(signal_format), corrupt)
    except EdgemedError as error:
        raise _fail(error) from error
    click.echo(f"{description} → {index.parent} ({np.round(len(plans) * seconds / 3600, 2)} h of signal)")
    click.echo(note)
    click.echo(f"validate it: edgemed validate-archive BUNDLE --archive {index.parent} --trust-store …")


def _trust_options(function):
    for option in reversed((
        click.option("--trust-store", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Folder of trusted public keys (*.pem): the bundle must be signed by one of them."),
        click.option("--allow-unsigned", is_flag=True,
                     help="DEVELOPMENT ONLY: run a bundle whose signature cannot be checked."),
        click.option("--version-state", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Rollback state file (default: bundle-versions.json in the trust store)."),
    )):
        function = option(function)
    return function


def _run_options(function):
    function = _trust_options(function)
    for option in reversed((
        click.option("--archive", "archive_folder", type=click.Path(path_type=Path), required=True,
                     help="The archive folder (archive.json, or a folder of .npy/.csv/.h5 recordings)."),
        click.option("--sample-rate", type=FiniteFloatRange(*SAMPLE_RATE_RANGE_HZ), default=None,
                     help="Rate of recordings whose index entry or file does not give one."),
        click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                     help="onnxruntime threads per worker."),
        click.option("--provider", default="cpu", show_default=True, help="onnxruntime execution provider."),
        click.option("--ray-logs", is_flag=True, help="Show Ray's own logs and the workers' logs."),
    )):
        function = option(function)
    return function


def _settings(options: dict):
    from pipeline.archive.worker import TrustSettings, WorkerConfig

    trust = TrustSettings(None if options["trust_store"] is None else str(options["trust_store"]),
                          options["allow_unsigned"],
                          None if options["version_state"] is None else str(options["version_state"]))
    return trust, WorkerConfig(provider=options["provider"], threads=options["threads"])


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


@click.command("validate-archive")
@click.argument("bundle", type=click.Path(path_type=Path))
@_run_options
@click.option("--output", type=OutputPath(folder=True, path_type=Path), default=None,
              help="Where results.parquet, report.json and report.md go (default: ARCHIVE-validation beside it).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Ray workers (one recording at a time each); a local Ray gets this many CPUs.")
@click.option("--ray-address", default=None,
              help="The head of a Ray cluster to run on: HOST:PORT as `ray start --head` prints it, or auto (default: "
                   "a local Ray on this machine; not a ray:// Ray Client address).")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress on stderr (a bar on a terminal, plain lines otherwise).")
@click.option("-v", "--verbose", is_flag=True, help="Log edgemed's decisions to stderr.")
def validate_archive_command(bundle: Path, archive_folder: Path, output: Path | None, workers: int,
                             ray_address: str | None, progress: bool, verbose: bool, **options) -> None:
    """Run BUNDLE over every recording of an archive on Ray Data; write per-recording Parquet and a report.

    Each worker verifies the bundle once and runs the device stream on one recording at a time, as `edgemed run`
    does; recordings with reference annotations are scored as the build's recording validation scores held-out
    records (EC57). An archive is a folder of .npy/.csv/.h5 recordings (with .annotations.json sidecars) or of WFDB
    records (.hea with its signal files, beats in .atr: PhysioNet's format), with an optional archive.json. A bad
    file is reported and skipped; the run goes on. Exit 1 when no recording ran.
    """
    from pipeline.archive import read_archive
    from pipeline.archive.report import class_shares
    from pipeline.archive.run import ArchiveRunConfig, validate_archive

    configure_logging(verbose)
    _check_local_workers((workers,), ray_address)
    trust, worker = _settings(options)
    resolved = archive_folder.resolve()  # "--archive ." names the folder it is, not ""
    output = output or resolved.parent / f"{resolved.name}-validation"
    bars = ProgressBars("", progress)
    try:
        archive = read_archive(archive_folder, options["sample_rate"])
        config = ArchiveRunConfig(workers=workers, ray_address=ray_address, worker=worker,
                                  ray_logs=options["ray_logs"])
        outcome = validate_archive(bundle, archive, output, trust, config, progress=bars)
    except EdgemedError as error:
        raise _fail(error) from error
    finally:
        bars.close()
    report = outcome.report
    total, run = report["totals"], report["run"]
    click.echo(f"{total['succeeded']}/{total['recordings']} recordings ran ({total['signal_s'] / 3600:.2f} h of "
               f"signal, {total['beats']} beats, {total['called_v']} called V) in {run['pipeline_s']:.1f} s on "
               f"{run['ray']}: {run['recordings_per_s']:.2f} recordings/s, {run['signal_s_per_s']:.0f} s of signal/s")
    if total.get("classes"):
        click.echo("classes called: " + class_shares(total["classes"]))
    for failure in report["failed"]:
        click.echo(f"FAILED {failure['name']} ({failure['file']}): {failure['error_type']}: {failure['error']}",
                   err=True)
    for refused in report["refused"]:
        click.echo(f"REFUSED {refused['recordings']} recording(s) of lead {refused['lead']} (not scored): "
                   f"{refused['reason']}", err=True)
    if report["validation"] is not None:
        gross = report["validation"]["gross"]
        click.echo("EC57 gross over {} annotated recordings: QRS Se {} +P {}, V Se {} +P {}".format(
            total["annotated"], *(_percent(gross[name]) for name in (
                "qrs_sensitivity", "qrs_positive_predictivity", "v_sensitivity", "v_positive_predictivity"))))
        leads = report["validation"]["leads"]
        if len(leads) > 1:  # recordings on several leads: the pooled figure mixes them, so each is shown
            click.echo("  per lead: " + "; ".join("{} ({} recordings) V Se {} +P {}".format(
                item["record"], item["recordings"], _percent(item["v_sensitivity"]),
                _percent(item["v_positive_predictivity"])) for item in leads))
    for path in outcome.written:
        click.echo(f"written: {path}")
    if total["recordings"] and not total["succeeded"]:
        raise click.ClickException(f"none of the {total['recordings']} recordings ran (see FAILED / REFUSED above "
                                   "and the report): nothing was validated")


@click.command("bench-archive")
@click.argument("bundle", type=click.Path(path_type=Path))
@_run_options
@click.option("--workers", "worker_counts", default="1,2", show_default=True,
              help="Comma-separated worker counts to measure (one local Ray, an actor pool of each size in turn).")
@click.option("--repeats", type=click.IntRange(min=1, max=20), default=3, show_default=True,
              help="Runs per worker count, interleaved.")
@click.option("--output", type=OutputPath(folder=True, path_type=Path), default=Path("benchmarks/results"),
              show_default=True, help="Where archive_scaling.json and .md go.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress on stderr.")
def bench_archive_command(bundle: Path, archive_folder: Path, worker_counts: str, repeats: int, output: Path,
                          progress: bool, **options) -> None:
    """Measure archive-validation throughput of BUNDLE with 1, 2, … local Ray workers (the scaling curve)."""
    from pipeline.archive import read_archive
    from pipeline.archive.scaling import ScalingConfig, measure_scaling, write_scaling

    configure_logging(False)
    try:
        counts = tuple(int(value) for value in worker_counts.split(","))
    except ValueError:
        raise click.BadParameter(f"{worker_counts!r}: expected comma-separated integers",
                                 param_hint="--workers") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"{worker_counts!r}: every worker count must be ≥ 1", param_hint="--workers")
    _check_local_workers(counts, None)
    trust, worker = _settings(options)
    bars = ProgressBars("", progress)
    try:
        archive = read_archive(archive_folder, options["sample_rate"])
        result = measure_scaling(bundle, archive, trust, ScalingConfig(counts, repeats, worker), progress=bars)
        written = write_scaling(result, output)
    except EdgemedError as error:
        raise _fail(error) from error
    finally:
        bars.close()
    click.echo(json.dumps(result["curve"], indent=1))
    for path in written:
        click.echo(f"written: {path}")


ARCHIVE_COMMANDS = (make_archive_command, validate_archive_command, bench_archive_command)
