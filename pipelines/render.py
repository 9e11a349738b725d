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
    lines += ["", f"run root: {s.get('root')}"]
    for k, v in (s.get("artifacts") or {}).items():
        lines.append(f"  {k}: {v}")
    if s.get("kfp_outputs"):
        lines.append(f"  KFP local outputs (task artifacts, reports): {s['kfp_outputs']}")
    return "\n".join(lines)
