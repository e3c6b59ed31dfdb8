"""The archive report: totals, failed files, and — where recordings carry reference beats — the EC57 figures.

The figures are the build's own: per-recording ``ec57.BeatCounts`` from the rows go through
``pipeline.validation.recordings.summarise_counts`` (per record, gross, bootstrap intervals over recordings, the
unclassified beats), ``ec57.gross_counts`` pools them per group, and the recording gate's absolute floors
(``pipeline.clinical.recording_gate.judge_recordings``, fp32-reference comparison left out: an archive has one
bundle) are applied to the gross figures for information. The report never decides anything; it says.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict

from pipeline.archive.worker import COUNT_FIELDS, FAILED, REFUSED
from pipeline.clinical.markdown import markdown_cell
from pipeline.clinical.recording_gate import RecordingGateConfig, judge_recordings
from pipeline.validation import ec57
from pipeline.validation.recordings import RecordingValidationConfig, gate_figures, summarise_counts
from runtime.real_data import RealDataStatus

UNNAMED_LEAD = "not named"  # a recording whose file and index entry name no lead (a .npy, an 'ecg' column)
LABELS = {"qrs_sensitivity": "QRS Se", "qrs_positive_predictivity": "QRS +P", "v_sensitivity": "V Se",
          "v_positive_predictivity": "V +P", "v_false_positive_rate": "V FPR"}


def _sum(rows: Sequence[dict], column: str) -> float:
    return sum(row[column] or 0 for row in rows)


def totals(rows: Sequence[dict]) -> dict:
    done = [row for row in rows if row["status"] == "ok"]
    quality: Counter = Counter()
    flags: Counter = Counter()
    classes: Counter = Counter()
    for row in done:
        classes.update(json.loads(row.get("classes") or "{}"))
        quality.update(json.loads(row["quality_seconds"] or "{}"))
        flags.update(json.loads(row["unclassified_flags"] or "{}"))
    return {
        "recordings": len(rows), "succeeded": len(done),
        "failed": sum(row["status"] == FAILED for row in rows),
        "refused": dict(sorted(Counter(row.get("lead") for row in rows if row["status"] == REFUSED).items())),
        "annotated": sum(bool(row["annotated"]) for row in done),
        "signal_s": round(_sum(done, "duration_s"), 3), "beats": int(_sum(done, "beats")),
        "classified": int(_sum(done, "classified")), "called_v": int(_sum(done, "called_v")),
        "unclassified": int(_sum(done, "unclassified")), "unclassified_flags": dict(sorted(flags.items())),
        "classes": dict(sorted(classes.items())),
        "leads": dict(sorted(Counter(row.get("lead") or UNNAMED_LEAD for row in done).items())),
        "quality_seconds": {flag: round(seconds, 3) for flag, seconds in sorted(quality.items())},
        "read_s": round(_sum(done, "read_s"), 3), "stream_s": round(_sum(done, "stream_s"), 3),
        "inference_s": round(_sum(done, "inference_s"), 3), "cpu_s": round(_sum(done, "cpu_s"), 3),
    }


def class_shares(classes: dict[str, int]) -> str:
    """``N 1 200 (60.0 %), V 800 (40.0 %)``: each class the stream called, its beats and share of the classified."""
    called = sum(classes.values())
    return ", ".join(f"{markdown_cell(name)} {count} ({count / called:.1%})" for name, count in classes.items()) + "."


def failures(rows: Sequence[dict]) -> list[dict]:
    """The recordings that could not run (a broken file or sidecar, a rate the stream cannot take …)."""
    return [{key: row[key] for key in ("name", "file", "error_type", "error")} for row in rows
            if row["status"] == FAILED]


def refusals(rows: Sequence[dict]) -> list[dict]:
    """Per lead the device refused (one the bundle was not validated on): how many recordings, which, and why."""
    by_lead: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["status"] == REFUSED:
            by_lead[row["lead"]].append(row)
    return [{"lead": lead, "recordings": len(items), "names": [row["name"] for row in items],
             "reason": items[0]["error"]} for lead, items in sorted(by_lead.items())]


def _refused_lines(refused: list[dict]) -> list[str]:
    """The recordings the device refused for their lead: one line per lead, with the device's reason."""
    if not refused:
        return []
    lines = ["## Refused: a lead the bundle was not validated on", "",
             "The device refuses these recordings before judging a sample (`runtime.leads`); they are in no figure "
             "below.", ""]
    for item in refused:
        names = ", ".join(item["names"][:5]) + (f" and {len(item['names']) - 5} more" if len(item["names"]) > 5
                                                 else "")
        lines.append(f"- lead {markdown_cell(item['lead'])}: {item['recordings']} recording(s) ({markdown_cell(names)})"
                     f" — {markdown_cell(item['reason'] or '')}")
    return [*lines, ""]


def _real_data_lines(real_data: dict | None) -> list[str]:
    """What the bundle's signed manifest says about validation on real data (``runtime.real_data``): an archive run is
    an evaluation and runs either way, but a device refuses a bundle NOT validated on real data."""
    if not real_data:
        return []
    reason = markdown_cell(real_data["reason"])
    if real_data["validated"]:
        return [f"Real data: the bundle's manifest says it was {real_data['status']} ({reason}).", ""]
    if real_data["status"] == RealDataStatus.NOT_VALIDATED.value:
        return [f"**Real data: the bundle is {real_data['status']}** ({reason}). A device refuses it; the figures "
                "below evaluate it, they do not make it fit for patients.", ""]
    return [f"**Real data: {real_data['status']}** ({reason}): these figures may be its only real-data evidence.", ""]


def counts_of(row: dict) -> ec57.BeatCounts:
    return ec57.BeatCounts(row["name"], *(int(row[name]) for name in COUNT_FIELDS))


def validation(rows: Sequence[dict], variant: str, config: RecordingValidationConfig) -> dict | None:
    """EC57 figures over the annotated recordings that ran (None when there are none)."""
    annotated = [row for row in rows if row["status"] == "ok" and row["annotated"]]
    if not annotated:
        return None
    counts = [counts_of(row) for row in annotated]
    skipped = {row["name"]: {"beats": int(row["unclassified"]), "flags": json.loads(row["unclassified_flags"])}
               for row in annotated}
    summary = summarise_counts(counts, skipped, config, healthy=None)
    grouped: dict[str, list[ec57.BeatCounts]] = defaultdict(list)
    by_lead: dict[str, list[ec57.BeatCounts]] = defaultdict(list)
    for row, item in zip(annotated, counts, strict=True):
        grouped[row["group"] or row["name"]].append(item)
        by_lead[row.get("lead") or UNNAMED_LEAD].append(item)
    summary["groups"], summary["leads"] = _pooled(grouped), _pooled(by_lead)
    verdict = judge_recordings(variant, gate_figures(summary), None, RecordingGateConfig())
    summary["floors"] = {**verdict.to_dict(),
                         "note": "the recording gate's absolute floors applied to the archive's gross figures, for "
                                 "information; the healthy-recordings false PVC rate is not measured on an archive"}
    return summary


def _pooled(grouped: dict[str, list[ec57.BeatCounts]]) -> list[dict]:
    """Counts pooled per key (a group, a lead), with their rates and how many recordings each pools."""
    pooled = [ec57.gross_counts(items, key) for key, items in sorted(grouped.items())]
    return [{**asdict(item), **ec57.rates(item), "recordings": len(grouped[item.record])} for item in pooled]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def _interval(values: list | None) -> str:
    return "–" if not values else f"{values[0]:.2%} – {values[1]:.2%}"


def _counts_table(title: str, items: Sequence[dict], extra: str = "") -> list[str]:
    header = f"| {title} |{extra} QRS TP | FN | FP | V TP | FN | FP | TN | " + " | ".join(LABELS.values()) + " |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for item in items:
        counts = " | ".join(str(item[name]) for name in COUNT_FIELDS)
        figures = " | ".join(_percent(item[name]) for name in LABELS)
        more = f" {item['recordings']} |" if extra else ""
        lines.append(f"| {markdown_cell(item['record'])} |{more} {counts} | {figures} |")
    return lines


def render_markdown(report: dict) -> str:
    bundle, archive, run, total = report["bundle"], report["archive"], report["run"], report["totals"]
    lines = [
        "# Archive validation",
        "",
        f"Bundle `{bundle['path']}` ({bundle['bundle_id']}, variant {bundle['variant']}, "
        f"{'signed by ' + bundle['signed_by'] if bundle['signed_by'] else 'NOT VERIFIED'}) on archive "
        f"`{archive['folder']}` ({archive['recordings']} recordings, "
        f"{'indexed' if archive['indexed'] else 'scanned, no index'}). {archive['description']}",
        "",
        *_real_data_lines(bundle.get("real_data")),
        f"Ray: {run['ray']}, {run['workers']} worker(s) × {run['threads_per_worker']} onnxruntime thread(s); "
        f"pipeline {run['pipeline_s']:.1f} s ({run['recordings_per_s']:.2f} recordings/s, "
        f"{run['signal_s_per_s']:.0f} s of signal/s), Ray start {run['ray_start_s']:.1f} s.",
        "",
        "| recordings | succeeded | failed | annotated | signal | beats | called V | unclassified | stream s | "
        "inference s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {total['recordings']} | {total['succeeded']} | {total['failed']} | {total['annotated']} | "
        f"{total['signal_s'] / 3600:.2f} h | {total['beats']} | {total['called_v']} | {total['unclassified']} | "
        f"{total['stream_s']:.1f} | {total['inference_s']:.1f} |",
        "",
        f"Quality (seconds flagged): {json.dumps(total['quality_seconds'])}; unclassified beats by flag: "
        f"{json.dumps(total['unclassified_flags'])}.",
        *(["", "Classes called (classified beats): " + class_shares(total["classes"])] if total.get("classes")
          else []),
        *(["", "Leads (as each file, or the index, names it): "
            + ", ".join(f"{markdown_cell(lead)} {count}" for lead, count in total["leads"].items())
            + ". A model's figures hold for the leads it was validated on; the bundle's manifest names them "
              "(inputs[].leads), and the device refuses recordings of other leads."] if total.get("leads") else []),
        "",
        *_refused_lines(report.get("refused") or []),
        "## Failed files",
        "",
    ]
    if report["failed"]:
        lines += ["| recording | file | error |", "|---|---|---|"]
        lines += [f"| {markdown_cell(item['name'])} | `{markdown_cell(item['file'])}` | "
                  f"{markdown_cell(item['error_type'])}: {markdown_cell(item['error'] or '')} |"
                  for item in report["failed"]]
    else:
        lines.append("None: every recording ran.")
    summary = report["validation"]
    lines += ["", "## EC57 (recordings with reference beats)", ""]
    if summary is None:
        lines.append("No recording that ran has reference annotations: nothing to score.")
    else:
        gross, intervals = summary["gross"], summary["intervals"]
        lines += [f"Matching {summary['matching']}; intervals: {intervals['method']} "
                  f"({intervals['confidence']:.0%}).", "", "| figure | gross | interval |", "|---|---|---|"]
        lines += [f"| {label} | {_percent(gross[name])} | {_interval(intervals[name])} |"
                  for name, label in LABELS.items()]
        floors = summary["floors"]
        lines += ["", f"Recording-gate floors (information only): **{'pass' if floors['passed'] else 'fail'}** — "
                  f"{floors['reason']}", "", "### Per group (counts pooled)", ""]
        lines += _counts_table("group", summary["groups"], " recordings |")
        lines += ["", "### Per lead (counts pooled)", ""]
        lines += _counts_table("lead", summary["leads"], " recordings |")
        lines += ["", "### Per recording", ""]
        lines += _counts_table("recording", summary["per_record"])
    if archive.get("note"):
        lines += ["", f"Note: {archive['note']}"]
    lines += ["", f"Per-recording rows: `{report['results']['file']}` ({report['results']['rows']} rows, sha256 "
              f"{report['results']['sha256'][:16]}…).", ""]
    return "\n".join(lines)
