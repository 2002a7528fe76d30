"""Screenshots of ``bayesdl label`` for the docs, and a 100-label session on digits.

Starts ``bayesdl label --data digits`` in a subprocess, answers batches with the digits'
true labels through the HTTP API (as a person labelling every item correctly would),
records the held-out accuracy and the refit time after each batch, then photographs the
labelling view (a batch half done) and the referral view (50 sample cases, 95% target)
in headless chromium.

    python docs/app_screenshots.py --labels 100 --out docs/images

Writes ``app_label.png``, ``app_referral.png`` and ``app_session.json`` to ``--out``.
Needs the ``app`` extra, selenium, chromium and chromium-driver.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import bayesdl as bdl


def start(work: Path, extra: list[str]) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    src = str(Path(bdl.__file__).parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-m", "bayesdl", "label", "--data", "digits", "--out", str(work),
         "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="")
        if "open http" in line:
            return proc, line.split("open ", 1)[1].strip()
    raise SystemExit("the server did not start")


def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    truth = bdl.data.digits("train").y
    work = Path(tempfile.mkdtemp(prefix="bayesdl-label-"))
    proc, url = start(work, ["--seed", str(args.seed)])
    base, token = url.split("/?token=")

    def api(path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, headers={
            "X-Bayesdl-Token": token, "Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())

    try:
        labelled = 0
        while labelled < args.labels:
            state = api("/api/state")
            todo = [it["item"] for it in state["items"] if it["status"] is None]
            if not todo:
                time.sleep(0.1)
                continue
            for item in todo:
                api("/api/answer", {"item": item, "label": int(truth[item])})
                labelled += 1
        while api("/api/state")["refitting"]:
            time.sleep(0.2)
        state = api("/api/state")
        session = {"command": f"bayesdl label --data digits --seed {args.seed}",
                   "curve": state["curve"], "threads": os.cpu_count()}  # fmt: skip
        (out / "app_session.json").write_text(json.dumps(session, indent=1) + "\n")
        for f in state["curve"]:
            print(
                f"{f['n']:4d} labels  held-out accuracy {f['accuracy']:.3f}  refit {f['seconds']:.1f} s"
            )
        # half of the next batch answered, for the picture
        for it in state["items"][:2]:
            api("/api/answer", {"item": it["item"], "label": int(truth[it["item"]])})
        api("/api/cases/sample", {"count": 50})

        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "chromium"
        for arg in ("--headless=new", "--no-sandbox", "--window-size=1280,900",
                    "--hide-scrollbars", "--force-device-scale-factor=1"):  # fmt: skip
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        try:
            driver.get(url)
            time.sleep(3)
            driver.save_screenshot(str(out / "app_label.png"))
            driver.get(base + "/referral")
            time.sleep(2)
            target = driver.find_element("id", "target")
            target.clear()
            target.send_keys("95")
            time.sleep(2)
            driver.find_element("id", "commit").click()
            time.sleep(3)
            # the expert answers the first three referred cases (with the true labels)
            test = bdl.data.digits("test")
            cases = api("/api/referral/state")["cases"]
            for case in [c for c in cases if c["referred"]][:3]:
                index = len(test) // 2 + int(case["name"].split("#")[1])
                api("/api/referral/decide", {"case": case["id"], "label": int(test.y[index])})
            driver.refresh()
            time.sleep(3)
            driver.find_element("id", "target").clear()
            driver.find_element("id", "target").send_keys("95")
            time.sleep(2)
            driver.save_screenshot(str(out / "app_referral.png"))
        finally:
            driver.quit()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--labels", type=int, default=100, help="labels to give before the pictures"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/images")
    main(parser.parse_args())
