"""The cpu-check report as markdown: per bundle, one row per CPU, and every case that differed or failed."""

from __future__ import annotations

from collections.abc import Sequence

_STATUS_MARK = {True: "✓", False: "✗"}


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f}"


def _difference(summary: dict) -> str:
    if not summary["max_differences"]:
        return "0 (bit for bit)"
    name, value = max(summary["max_differences"].items(), key=lambda item: item[1])
    return f"{value:.1e} ({name})"


def _bundle_table(bundle: str, summaries: Sequence[dict], targets: dict[str, dict]) -> list[str]:
    rows = [item for item in summaries if item["bundle"] == bundle]
    with_ec57 = any(item["ec57_gross"] for item in rows)
    header = ["CPU", "instruction sets", "cases passed", "events", "events differing", "decisions changed",
              "largest |Δ| of a number", "device warned of its CPU"]
    if with_ec57:
        header += ["QRS Se / +P (%)", "V Se / +P (%)"]
    lines = [f"### {bundle}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for item in rows:
        target = targets[item["target"]]
        reference = not target["emulated"]
        cells = [f"{item['target']}{' (reference, native)' if reference else ''}", target["instruction_sets"],
                 f"{_STATUS_MARK[item['passed'] == item['cases']]} {item['passed']} / {item['cases']}",
                 f"{item['events']:,}", "–" if reference else str(item["differing_events"]),
                 "–" if reference else str(item["decision_changes"]), "–" if reference else _difference(item),
                 f"{item['device_warned']} of {item['cases']} runs" if item["device_warned"] else "no"]
        if with_ec57:
            gross = item["ec57_gross"] or {}
            cells += [f"{_percent(gross.get('qrs_sensitivity'))} / {_percent(gross.get('qrs_positive_predictivity'))}",
                      f"{_percent(gross.get('v_sensitivity'))} / {_percent(gross.get('v_positive_predictivity'))}"]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_markdown(report: dict) -> str:
    targets = {target["name"]: target for target in report["targets"]}
    machine = report["machine"]
    sources = sorted({row["source"] for row in report["results"]})
    verdict = ("every emulated CPU gave the same decisions" if report["passed"] else
               "NOT every CPU agreed" if report["summaries"] else
               "nothing was checked: no bundle has real inputs edgemed knows")
    lines = [
        "# The device runtime on other CPUs",
        "",
        f"Measured {report['measured_at']} on {machine['cpu_model']} ({machine['architecture']}), the reference; "
        f"emulated with {', '.join(report['qemu']) or 'no QEMU (no emulated target)'}. Device packages: "
        + ", ".join(f"{name} {version}" for name, version in report["device_packages"].items())
        + ". Every run is the device command `python -m runtime BUNDLE --input FILE --threads 1 --trust-store …` "
        "with a copy of `runtime/` alone.",
        "",
        f"**{verdict}** (every field of every event as the device writes it; numbers within "
        f"{report['tolerance']:g}, decisions — class, low-confidence call, quality flags — never allowed to differ).",
        "",
        report["note"],
        "",
        *(f"**Emulator defect on `{name}`**: {defect}." for name, defect in report.get("emulator_defects", {}).items()),
        *([""] if report.get("emulator_defects") else []),
        "Inputs (" + ("whole recordings" if report["seconds_per_signal"] is None else
                      f"the first {report['seconds_per_signal']:g} s of each signal") + "):",
        *(f"- {source}" for source in sources),
        "",
        *(["Bundles (as they stood when measured):",
           *(f"- `{name}`: " + (f"{item['bundle_id']}, variant {item['variant']}, manifest sha256 "
                                f"{item['manifest_sha256'][:12]}…, {item['real_data']}" if "bundle_id" in item
                                else f"manifest unreadable ({item.get('unreadable')})")
             for name, item in report["bundles"].items()),
           ""] if report.get("bundles") else []),
        "CPUs:",
        *(f"- `{target['name']}`: {target['instruction_sets']} — {target['devices']}"
          + (f" (QEMU `-cpu {target['qemu_cpu'].split(',')[0]}`)" if target["emulated"] else "")
          for target in report["targets"]),
        "",
    ]
    for bundle in dict.fromkeys(item["bundle"] for item in report["summaries"]):
        lines += _bundle_table(bundle, report["summaries"], targets)
    problems = [row for row in report["results"] if row["status"] in ("different", "failed")]
    if problems:
        lines += ["## Cases that differed or failed", "", "| bundle | case | CPU | status | first difference / error |",
                  "|---|---|---|---|---|"]
        lines += [f"| {row['bundle']} | {row['case']} | {row['target']} | {row['status']} | "
                  f"{(row['error'] or row['first_difference'] or '').replace('|', '/')} |" for row in problems]
        lines.append("")
    for bundle, reason in report["skipped_bundles"].items():
        lines.append(f"Not checked: `{bundle}` — {reason}.")
    lines += ["", "Command: `make cpu-check` (`.venv/bin/edgemed cpu-check --help`)."]
    return "\n".join(lines) + "\n"
