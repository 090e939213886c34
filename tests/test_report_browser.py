"""The analyst's report in a real browser, and `snakemake --report report.zip`, on a tiny run.

The workflow runs once, on the bundled demo data with tests/integration/config.yaml (the
helpers come from tests/test_workflow.py). The page is opened in headless Chromium, driven
over the DevTools protocol on a pipe (--remote-debugging-pipe) with the standard library
only: no browser download, no new test dependency, no listening port. The test checks that
every section is there, that clicking a calls-table header sorts it, that the filter works,
that the console stays clean and that no request leaves the page; it saves a screenshot of
each task section to $BARLOC_SCREENSHOTS (default: a pytest temp dir) and prints where.

Skipped only when no chromium binary is installed (.ci/run installs Debian's).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_workflow import snakemake

pytestmark = pytest.mark.slow

TASKS = ("fish_origin", "localization")
SUBSECTIONS = {
    "fish_origin": ["calls", "metrics", "calibration", "coverage", "priors", "training", "data"],
    "localization": ["calls", "metrics", "calibration", "priors", "training", "data"],
}
RULES_PER_TASK = ("ingest", "split", "train", "predict", "calibrate", "prior_shift", "evaluate")


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


@pytest.fixture(scope="module")
def tiny_run(workflow_run) -> Path:
    return workflow_run


# --------------------------------------------------------------------------- snakemake --report


def test_every_rule_writes_a_log(tiny_run):
    logs = tiny_run / "results/logs"
    for task in TASKS:
        for rule in RULES_PER_TASK:
            assert (logs / task / f"{rule}.log").is_file(), (task, rule)
    report_log = (logs / "report.log").read_text()
    assert "report on 2 task(s)" in report_log


def test_snakemake_report_zip_unpacks_with_an_index(tiny_run, tmp_path):
    zpath = tmp_path / "report.zip"
    res = snakemake(tiny_run, "--report", str(zpath))
    assert res.returncode == 0, res.stderr[-4000:]
    with zipfile.ZipFile(zpath) as zf:
        assert zf.testzip() is None
        zf.extractall(tmp_path / "unpacked")
    root = tmp_path / "unpacked"
    index = root / "report" / "report.html"
    assert index.is_file() and index.stat().st_size > 10_000
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    # The analyst's page and every task's calls and metrics, unchanged.
    names = [f.rsplit("/", 1)[-1] for f in files]
    assert names.count("index.html") == 1 and names.count("calls.tsv") == 2 and names.count("metrics.json") == 2
    packed = next(root / f for f in files if f.endswith("/index.html"))
    assert packed.read_bytes() == (tiny_run / "results/report/index.html").read_bytes()
    text = index.read_text(encoding="utf-8", errors="replace")
    assert "self-contained analyst's page" in text  # workflow.rst, the report's front page
    assert "accuracy-vs-coverage" in text  # index.rst, the caption of index.html


# --------------------------------------------------------------------------- a DevTools client on a pipe


class Chromium:
    """Headless Chromium driven with the DevTools protocol over --remote-debugging-pipe:
    JSON messages separated by NUL bytes, commands on the child's fd 3, replies on fd 4."""

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.next_id = 0
        self.events: list[dict] = []
        self.buffer = b""
        cmd_r, self.cmd_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        # Give the child's ends numbers above 4, so moving them to 3 and 4 cannot clobber one,
        # and make every end close-on-exec (dup2 in the child clears that flag on 3 and 4 only).
        cmd_r, resp_w = (self._above_4(fd) for fd in (cmd_r, resp_w))
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--mute-audio",
            "--hide-scrollbars",
            "--window-size=1280,1000",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]

        def to_3_and_4() -> None:  # in the child, before exec: commands on fd 3, replies on fd 4
            os.dup2(cmd_r, 3)
            os.dup2(resp_w, 4)

        # close_fds=False keeps the new fds 3 and 4; every other fd Python opened is close-on-exec.
        self.proc = subprocess.Popen(
            [binary, *flags],
            preexec_fn=to_3_and_4,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(cmd_r)
        os.close(resp_w)

    @staticmethod
    def _above_4(fd: int) -> int:
        high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 5)
        os.close(fd)
        return high

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self.resp_r], [], [], left)
            if ready:
                chunk = os.read(self.resp_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the DevTools pipe: " + self._stderr_tail())
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def _stderr_tail(self) -> str:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "(still running)"
        if self.proc.stderr is None:
            return ""
        return f"exit {self.proc.returncode}: " + self.proc.stderr.read().decode(errors="replace")[-2000:]

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        msg: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._read_message(deadline)
            if ev.get("method") == method:
                return ev
            self.events.append(ev)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.cmd_w, self.resp_r):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.stderr:
            self.proc.stderr.close()


class Page:
    """One tab, with the page's console messages, exceptions and network requests recorded."""

    def __init__(self, browser: Chromium) -> None:
        self.b = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")

    def send(self, method: str, params: dict | None = None) -> dict:
        return self.b.send(method, params, self.session)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.b.wait_for("Page.loadEventFired")

    def eval(self, expression: str):
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            raise AssertionError(f"script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (pressed + released) at the element's centre."""
        box = self.eval(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            el.scrollIntoView({{block: "center"}});
            const r = el.getBoundingClientRect();
            return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
        }})()""")
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box["x"], "y": box["y"], "button": "left", "clickCount": 1},
            )

    def screenshot(self, selector: str, path: Path) -> None:
        rect = self.eval(f"""(() => {{
            const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();
            return {{x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}};
        }})()""")
        shot = self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {**rect, "scale": 1}}
        )
        path.write_bytes(base64.b64decode(shot["data"]))

    def records(self, method: str) -> list[dict]:
        return [e["params"] for e in self.b.events if e.get("method") == method]


@pytest.fixture(scope="module")
def page_in_browser(tiny_run, tmp_path_factory):
    binary = chromium_path()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    profile = Path(tempfile.mkdtemp(prefix="barloc-chromium-"))
    browser = Chromium(binary, profile)
    try:
        page = Page(browser)
        page.goto((tiny_run / "results/report/index.html").as_uri())
        yield page
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)


def column(page: Page, task: str, idx: int, attr: str | None = None) -> list:
    get = f'c.getAttribute("{attr}")' if attr else "c.textContent.trim()"
    return page.eval(f"""Array.from(document.querySelectorAll("#calls-{task} tbody tr"))
        .filter(r => !r.hidden).map(r => {{ const c = r.cells[{idx}]; return {get}; }})""")


def test_every_section_is_on_the_page(page_in_browser):
    page = page_in_browser
    ids = set(page.eval("Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
    assert {"summary", "how-to-read"} <= ids
    for task in TASKS:
        assert f"task-{task}" in ids
        for sub in SUBSECTIONS[task]:
            assert f"task-{task}-{sub}" in ids, (task, sub)
    assert "task-localization-coverage" not in ids  # multiclass only
    # Every chart decoded as an image (a broken data URI has naturalWidth 0).
    sizes = page.eval("Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    assert len(sizes) >= 9 and all(ok for _, ok in sizes), sizes
    summary = page.eval("document.getElementById('summary').innerText")
    for words in (
        "Date",
        "barloc version",
        "Git commit",
        "Device",
        "Input files",
        "SHA-256",
        "Training time",
        "Prior correction",
    ):
        assert words in summary, words
    assert "Config hash" not in summary  # the report rule receives only its own settings, not the config


def test_calls_table_sorts_when_a_header_is_clicked(page_in_browser):
    page = page_in_browser
    for task in TASKS:
        ids_before = column(page, task, 0)
        assert len(ids_before) > 5
        page.click(f"#calls-{task} thead th:nth-child(3)")  # Probability
        asc = [float(v) for v in column(page, task, 2, "data-sort")]
        assert asc == sorted(asc) and asc != sorted(asc, reverse=True)
        header = f"document.querySelector('#calls-{task} thead th:nth-child(3)').getAttribute('aria-sort')"
        assert page.eval(header) == "ascending"
        page.click(f"#calls-{task} thead th:nth-child(3)")
        desc = [float(v) for v in column(page, task, 2, "data-sort")]
        assert desc == sorted(desc, reverse=True) and page.eval(header) == "descending"
        page.click(f"#calls-{task} thead th:nth-child(1)")  # ID, compared as text with numbers inside
        ids = column(page, task, 0)
        expected = page.eval(
            f"{json.dumps(ids_before)}.sort((a, b) => "
            "a.localeCompare(b, undefined, {numeric: true, sensitivity: 'base'}))"
        )
        assert ids == expected and ids != ids_before


def test_calls_table_filters(page_in_browser):
    page = page_in_browser
    for task in TASKS:
        controls = f'[data-controls-for="calls-{task}"]'
        ids = column(page, task, 0)
        wanted = ids[len(ids) // 2]

        def filter_by(text: str, controls: str = controls) -> None:
            page.eval(f"""(() => {{ const box = document.querySelector('{controls} .filter');
                box.value = {json.dumps(text)}; box.dispatchEvent(new Event('input')); }})()""")

        filter_by(wanted.lower())
        shown = column(page, task, 0)
        assert wanted in shown and len(shown) < len(ids)
        assert "of" in page.eval(f"document.querySelector('{controls} .shown-count').textContent")
        filter_by("")
        assert len(column(page, task, 0)) == len(ids)
        page.click(f"{controls} .only-uncertain")
        flags = column(page, task, 4)
        n_uncertain = page.eval(f"document.querySelectorAll('#calls-{task} tbody tr[data-uncertain=\"1\"]').length")
        assert len(flags) == n_uncertain and all(f == "uncertain" for f in flags)
        page.click(f"{controls} .only-uncertain")
        assert len(column(page, task, 0)) == len(ids)


def test_screenshots_of_each_task_section(page_in_browser, tmp_path_factory):
    page = page_in_browser
    outdir = Path(os.environ.get("BARLOC_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    outdir.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        path = outdir / f"{task}.png"
        page.screenshot(f"#task-{task}", path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    page.screenshot("#summary", outdir / "summary.png")
    print(f"\nreport screenshots: {outdir}")


def test_no_console_errors_and_no_request_leaves_the_page(page_in_browser):
    page = page_in_browser
    # Runs last in this module (pytest keeps file order), after the clicks and the filtering.
    errors = [e for e in page.records("Runtime.consoleAPICalled") if e.get("type") in ("error", "assert", "warning")]
    errors += page.records("Runtime.exceptionThrown")
    errors += [e for e in page.records("Log.entryAdded") if e["entry"].get("level") in ("error", "warning")]
    assert not errors, errors
    urls = [e["request"]["url"] for e in page.records("Network.requestWillBeSent")]
    assert urls, "the page load itself should have been recorded"
    leaving = [u for u in urls if not u.startswith(("file://", "data:"))]
    assert not leaving, leaving
    assert not page.records("Network.loadingFailed")
