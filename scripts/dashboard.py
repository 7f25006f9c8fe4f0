"""Drives the metrics example and plots the Grafana dashboard's queries.

Run by scripts/dashboard, which starts the example, its redis-server and a
Prometheus scraping it. The load, in phases:

  steady    products (Zipf-like ids, some past 1,000: negative entries),
            categories (swr) and a product touched now and then
  outage    the same while redis-server is stopped (SIGSTOP): calls time
            out, the breaker opens, touches' invalidations wait
  recovery  redis-server goes on (SIGCONT): the waiting invalidations are
            replayed, hits come back

Then every panel's targets are evaluated by Prometheus over the run, with
the dashboard's variables as Grafana would fill them for "All" ($function:
.*; $__rate_interval: 4 scrape intervals), and drawn in the dashboard's
layout.
"""

import argparse
import base64
import json
import os
import random
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402  (matplotlib's own dependency)

PHASES = [("steady", 60), ("outage", 25), ("recovery", 45)]
RATE_INTERVAL = "4s"
WORKERS = 6


def get(url, method="GET"):
    """Whether the service answered as it should: a 5xx or no answer is a
    failed call (a 404, an id that does not exist, is an answer)."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
        return True
    except urllib.error.HTTPError as error:
        return error.code == 404
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return False


def wait_for(url, what, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                response.read()
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise SystemExit(f"scripts/dashboard: {what} did not answer at {url}")


def load(app, stop, seed, tally):
    rng = random.Random(seed)
    while not stop.is_set():
        r = rng.random()
        if r < 0.80:
            # Skewed ids: a few hot products, a long tail, 5% that do not exist.
            id = int(1_050 * rng.random() ** 3) + 1
            ok = get(f"{app}/products/{id}")
        elif r < 0.97:
            ok = get(f"{app}/categories/{rng.randrange(10)}")
        else:
            ok = get(f"{app}/products/{rng.randrange(1, 50)}/touch", method="POST")
        tally[0] += 1
        tally[1] += not ok


def drive(app, redis_pid):
    stop = threading.Event()
    tallies = [[0, 0] for _ in range(WORKERS)]
    workers = [
        threading.Thread(target=load, args=(app, stop, seed, tallies[seed]), daemon=True) for seed in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    marks = []
    for phase, seconds in PHASES:
        marks.append((phase, time.time()))
        if phase == "outage":
            os.kill(redis_pid, signal.SIGSTOP)
        elif phase == "recovery":
            os.kill(redis_pid, signal.SIGCONT)
        print(f"scripts/dashboard: {phase} for {seconds} s", flush=True)
        time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    calls, failed = sum(t[0] for t in tallies), sum(t[1] for t in tallies)
    print(f"scripts/dashboard: {calls} requests, {failed} failed (a 5xx or no answer)", flush=True)
    # One more scrape after the last request.
    time.sleep(3)
    return marks


def query_range(prometheus, expr, start, end, step=1):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise SystemExit(f"scripts/dashboard: Prometheus refused {expr!r}: {body}")
    return body["data"]["result"]


def legend(fmt, labels):
    text = fmt or "{{__name__}}"
    for name, value in labels.items():
        text = text.replace("{{" + name + "}}", value)
    return text.replace("{{function}}", "").strip()


def fill(expr, seconds):
    return (
        expr.replace("$function", ".*")
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", f"{seconds}s")
    )


def fetch(dashboard, prometheus, marks):
    """Every panel's targets over the run: [[(legend format, series), ...], ...]."""
    start, end = marks[0][1], time.time()
    panels = []
    for panel in dashboard["panels"]:
        results = []
        for target in panel.get("targets", []):
            expr = fill(target["expr"], int(end - start))
            for series in query_range(prometheus, expr, start, end):
                results.append((target.get("legendFormat"), series))
        panels.append(results)
    return {"marks": marks, "end": end, "panels": panels}


def plot(dashboard, data, out):
    marks, end = data["marks"], data["end"]
    start = marks[0][1]
    panels = dashboard["panels"]
    # Grafana's grid rows, 8 to a panel here: a plot row per 8.
    per_row = 8
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) // per_row
    plt.style.use("dark_background")
    fig = plt.figure(figsize=(16, rows * 3.2))
    fig.patch.set_facecolor("#111217")
    grid = fig.add_gridspec(rows, 24, hspace=0.45, wspace=3, top=0.95, bottom=0.03, left=0.04, right=0.99)
    for panel, results in zip(panels, data["panels"]):
        pos = panel["gridPos"]
        y, h = pos["y"] // per_row, pos["h"] // per_row
        ax = fig.add_subplot(grid[y : y + h, pos["x"] : pos["x"] + pos["w"]])
        ax.set_facecolor("#181b1f")
        ax.set_title(panel["title"], loc="left", fontsize=10, color="#ccccdc")
        ax.tick_params(labelsize=7, colors="#9fa7b3")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.grid(color="#2c3235", linewidth=0.5)
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        drawn = 0
        for fmt, series in results:
            times = [float(t) - start for t, _ in series["values"]]
            values = [float(v) for _, v in series["values"]]
            if unit == "s":
                values = [v * 1000 for v in values]
            elif unit == "percentunit":
                values = [v * 100 for v in values]
            ax.plot(times, values, linewidth=1.2, label=legend(fmt, series["metric"]))
            drawn += 1
        for phase, at in marks[1:]:
            ax.axvline(at - start, color="#ff9830", linewidth=0.8, linestyle="--")
        ax.set_xlim(0, end - start)
        ax.set_ylabel({"s": "ms", "percentunit": "%", "reqps": "per s"}.get(unit, ""), fontsize=7, color="#9fa7b3")
        if drawn:
            ax.legend(fontsize=6, loc="upper left", framealpha=0.4, ncol=2)
        else:
            ax.text(0.5, 0.5, "No data (the example has no write-behind log)" if "Write" in panel["title"]
                    else "No data", transform=ax.transAxes, ha="center", color="#9fa7b3", fontsize=8)
    names = ", ".join(f"{phase} from {at - start:.0f} s" for phase, at in marks[1:])
    fig.suptitle(
        f"{dashboard.get('title', 'aside')}: examples/metrics_server.rs on Redis under load ({names}; "
        "seconds since the start)",
        color="#ccccdc", fontsize=11, x=0.01, y=0.985, ha="left",
    )
    fig.savefig(out, dpi=72, facecolor=fig.get_facecolor())
    # 64 colours are plenty for lines on a dark ground, and a third the size.
    Image.open(out).convert("RGB").quantize(colors=64).save(out, optimize=True)
    print(f"scripts/dashboard: wrote {out}")


def doc_fragment(png, page):
    """The picture as a page of the guide can show it: inline, since the
    crate's docs have no other place to load an image from."""
    with open(png, "rb") as file:
        data = base64.b64encode(file.read()).decode()
    with open(page, "w") as file:
        file.write(
            "<!-- Made by scripts/dashboard from examples/grafana/dashboard.png; do not edit. -->\n"
            f'<img alt="The aside dashboard\'s panels over a run of the metrics example" '
            f'src="data:image/png;base64,{data}" width="100%">\n'
        )
    print(f"scripts/dashboard: wrote {page}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--app")
    parser.add_argument("--prometheus")
    parser.add_argument("--redis-pid", type=int)
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--page", help="the guide's fragment that shows the picture")
    # Where the queries' results are kept, to draw again without a run:
    # `python3 scripts/dashboard.py --replot data.json --dashboard ... --out ...`.
    parser.add_argument("--keep")
    parser.add_argument("--replot")
    args = parser.parse_args()
    with open(args.dashboard) as file:
        dashboard = json.load(file)
    if args.replot:
        with open(args.replot) as file:
            data = json.load(file)
    else:
        wait_for(f"{args.app}/metrics", "the metrics example")
        wait_for(f"{args.prometheus}/-/ready", "Prometheus")
        marks = drive(args.app, args.redis_pid)
        data = fetch(dashboard, args.prometheus, marks)
        if args.keep:
            with open(args.keep, "w") as file:
                json.dump(data, file)
    plot(dashboard, data, args.out)
    if args.page:
        doc_fragment(args.out, args.page)


if __name__ == "__main__":
    main()
