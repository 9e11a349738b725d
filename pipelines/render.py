"""The text a local run prints at the end: the searched net, its accuracy, where the artifacts are."""


def format_summary(s: dict) -> str:
    from components.reports import human

    final = s.get("final") or {}
    best = final.get("search") or {}
    acc = final.get("retrain") or {}
    lines = [f"finished in {s.get('seconds', 0):.0f} s, {len(s.get('generations', []))} generation(s)", ""]
    if best:
        lines.append("searched architecture (last generation):")
        for b in best.get("blocks", []):
            lines.append(f"  block {b['block']}: cell {b['cell']}  {b['ops']}")
        lines.append(f"  params {best['params']:,} ({human(best['params'])}), FLOPs {best['flops']:,} "
                     f"({human(best['flops'])}), summed block loss {best['loss']:.4f}")
    if acc:
        lines.append(f"retrained: top-1 {acc.get('top1', float('nan')):.2f}% (top-5 {acc.get('top5', float('nan')):.2f}%)"
                     f" after {acc.get('epochs')} epochs")
    for task, m in (final.get("transfer") or {}).items():
        nums = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float)
                         and not isinstance(v, bool) and not k.endswith(("_s", "time", "lr")))
        lines.append(f"transfer {task}: {nums}")
    for g in s.get("generations", []):
        sc = (g.get("scaled") or {}).get("metrics")
        extra = f"; scaled teacher top-1 {sc['top1']:.2f}%" if sc else ""
        gs = g.get("search") or {}
        lines.append(f"gen {g['generation']}: teacher {g.get('teacher', {}).get('model', '?')}; searched "
                     f"loss {gs.get('loss', float('nan')):.4f}, params {human(gs.get('params'))}{extra}")
    lines += comparison_lines(s)
    lines += ["", f"run root: {s.get('root')}"]
    for k, v in (s.get("artifacts") or {}).items():
        lines.append(f"  {k}: {v}")
    if s.get("kfp_outputs"):
        lines.append(f"  KFP local outputs (task artifacts, reports): {s['kfp_outputs']}")
    return "\n".join(lines)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def comparison_lines(s: dict) -> list[str]:
    """The per-generation table of teacher, searched net and random architecture (top-1 and
    params, :func:`dna.run_summary.comparison`), then the summary's teacher-trend lines."""
    from components.reports import human

    rows = s.get("comparison") or []
    if not rows:
        return []
    header = ["gen", "teacher top-1", "searched top-1", "searched params", "random top-1", "random params",
              "searched/random trained as"]
    table = [header]
    for r in rows:
        how = "scaled + retrained (next teacher)" if r.get("searched_as") == "scaled" else "retrained (final)"
        table.append([str(r.get("generation")), _pct(r.get("teacher_top1")), _pct(r.get("searched_top1")),
                      human(r.get("searched_params")) if r.get("searched_params") else "-",
                      _pct(r.get("random_top1")),
                      human(r.get("random_params")) if r.get("random_params") else "-", how])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    out = ["", "teacher vs searched vs random architecture (top-1 %, same params budget, same recipe):"]
    out += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    trend = s.get("trend") or []
    out += [f"note: {line}" for line in trend]
    if not trend and len(rows) > 1 and all(r.get("teacher_top1") is not None for r in rows):
        out.append("teachers rise every generation, and the gen-0 teacher is above the searched students")
    return out
