"""The browser benchmark's report (`bench_browser.py`): one row per page, then every control measured,
each against the floor app measured in the same run."""

from __future__ import annotations

import statistics


def fmt_bytes(n: float) -> str:
    return f"{n / 1024:.0f} KB" if n >= 1024 else f"{n:.0f} B"


def ratio(x: float | None, floor: float | None) -> str:
    return "-" if x is None or not floor else f"{x / floor:.2f}"


def report(rows: list[dict], cold: tuple[float, float]) -> None:
    reruns = [[r["median"] for r in row["controls"] if not r["look"]] for row in rows]
    clicks = [statistics.median(m) if m else None for m in reruns]
    floor_load, floor_click = rows[0]["load"], clicks[0]
    print(f"\n{'page':<12} {'first s':<8} {'load s':<7} {'×floor':<7} ", end="")
    print(f"{'rerun click s':<14} {'×floor':<7} ", end="")
    print(f"{'look s':<7} {'×floor':<7} {'look max s':<11} {'looks that reran':<17} bytes/rerun median (max)")
    for row, click in zip(rows, clicks, strict=True):
        first, load = ("-" if row[k] is None else f"{row[k]:.2f}" for k in ("first", "load"))
        line = f"{row['page']:<12} {first:<8} {load:<7} {ratio(row['load'], floor_load):<7} "
        if click is None:
            print(line + "(no control measured)")
            continue
        looks = [r for r in row["controls"] if r["look"]]
        look = statistics.median(r["median"] for r in looks) if looks else None
        look_text = "-" if look is None else f"{look:.3f}"
        worst = "-" if not looks else f"{max(r['max'] for r in looks):.3f}"
        reran = "-" if not looks else str(sum(r["reran"] for r in looks))
        sizes = [r["bytes"] for r in row["controls"] if not r["look"]]
        line += f"{click:<14.3f} {ratio(click, floor_click):<7} {look_text:<7} {ratio(look, floor_click):<7} "
        size = f"{fmt_bytes(statistics.median(sizes))} ({fmt_bytes(max(sizes))})"
        print(f"{line}{worst:<11} {reran:<17} {size}")
    print(f"cold start: floor {cold[0]:.2f} s, app {cold[1]:.2f} s (×{cold[1] / cold[0]:.1f})")
    print("goals: warm load ≤ 1.8× floor, rerun click median ≤ 2.5× floor; SmolLM2's first load ≤ 6 s")
    print("       (issue 25); looks (view-only, in the attention component): median ≤ 0.1 s and ≤ 0.6× the")
    print("       floor's rerun, every look ≤ 0.2 s, no look starts a rerun (issue 27)")
    print(f"\n{'page':<12} {'control':<52} {'median s':>8} {'first s':>8}  {'method':<10} bytes (median)")
    for row in rows:
        for r in row["controls"]:
            note = f"  ({r['timeouts']} timed out)" if r["timeouts"] else ""
            print(
                f"{row['page']:<12} {r['control'][:52]:<52} {r['median']:>8.3f} {r['first']:>8.3f}  "
                f"{r['method']:<10} {fmt_bytes(r['bytes'])}{note}"
            )
        for name, why in row["failed"]:
            print(f"{row['page']:<12} {name[:52]:<52} {'FAILED':>8}  {why[:100]}")
