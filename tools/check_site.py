#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium and check that it works.

    python tools/check_site.py [_build/html] [--screenshots _build/screenshots]

The site is served from a local HTTP server on 127.0.0.1 and each page is opened in a fresh tab of
Debian's ``chromium``, driven over the Chrome DevTools Protocol (a websocket, via ``websocket-client``).
A page passes when:

- it loads, with no JavaScript exception, no ``console.error``, no error in the browser's log, and
  no failed or >= 400 request for one of the site's own files;
- every ``<img>`` decoded (``complete`` and ``naturalWidth > 0``) and every ``<video>`` loaded its
  metadata without a media error;
- if it holds maths (Sphinx's ``.math`` elements), MathJax loaded and typeset every one of them, with
  no TeX error; and no TeX was left as text outside them (``$$`` or a command such as ``\\frac`` in the page's prose,
  not in code: a display equation that Markdown broke apart, e.g. a line starting with ``+``, or ``$$``
  inside a paragraph that paired the dollars wrongly);
- if it was made from a notebook, it has a launch link to Google Colab for that notebook.

Display equations and tables wider than the text column (cut off, or scrolled out of sight) are listed
as warnings.

A full-page screenshot of each page (in parts, NAME.png, NAME.2.png, ..., for pages taller than
16,000 px) is saved under ``--screenshots`` (default: ``screenshots`` beside
the HTML folder, i.e. ``_build/screenshots``).

The book must work offline, so by default the browser cannot reach any host but 127.0.0.1 (every
other name resolves to "not found"): a page that needs a CDN fails its functional checks (maths not
typeset, a script missing). Requests to outside hosts that fail for that reason are listed as
warnings, not errors, since they are failures this check caused on purpose. With ``--allow-network``
the browser may go out; an outside request that fails then counts as a warning only if this machine
cannot reach that host either (its name does not resolve or its port does not answer).

Exit status: 0 when every page passes, 1 otherwise, 2 when the check itself could not run.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

try:
    import websocket  # the websocket-client package
except ImportError:  # pragma: no cover - explained to the user
    sys.exit(
        "check_site.py needs the websocket-client package: pip install websocket-client (it is in the [test] extra)"
    )

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-allow-origins=*",
    "--remote-debugging-port=0",
]
OFFLINE_RULES = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
NOT_PAGES = {"search.html", "genindex.html", "py-modindex.html"}
VIEWPORT = {"width": 1280, "height": 900}
MAX_SCREENSHOT_HEIGHT = 16000
NETWORK_ERRORS = (  # net:: errors that mean "this host cannot be reached from here"
    "ERR_NAME_NOT_RESOLVED",
    "ERR_NAME_RESOLUTION_FAILED",
    "ERR_INTERNET_DISCONNECTED",
    "ERR_ADDRESS_UNREACHABLE",
    "ERR_NETWORK_UNREACHABLE",
    "ERR_CONNECTION_REFUSED",
    "ERR_CONNECTION_TIMED_OUT",
    "ERR_CONNECTION_RESET",
    "ERR_CONNECTION_CLOSED",
    "ERR_TIMED_OUT",
    "ERR_PROXY_CONNECTION_FAILED",
    "ERR_TUNNEL_CONNECTION_FAILED",
)

# Runs inside each page once it has loaded; resolves to a JSON-able summary of what is on it.
PAGE_PROBE = r"""
(async () => {
  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const within = (promise, ms) => Promise.race([promise, wait(ms)]);
  const images = Array.from(document.images);
  for (const img of images) { if (img.loading === "lazy") img.loading = "eager"; }
  await within(Promise.all(images.map((img) => img.complete ? null :
      new Promise((resolve) => { img.addEventListener("load", resolve); img.addEventListener("error", resolve); }))), 15000);
  const videos = Array.from(document.querySelectorAll("video"));
  await within(Promise.all(videos.map((video) => (video.readyState >= 1 || video.error) ? null :
      new Promise((resolve) => { video.addEventListener("loadedmetadata", resolve); video.addEventListener("error", resolve, true); }))), 15000);
  const maths = Array.from(document.querySelectorAll(".math"));
  let mathjax = "absent";
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try { await within(MathJax.startup.promise, 20000); mathjax = "ready"; } catch (e) { mathjax = "failed: " + e; }
  } else if (window.MathJax) {
    mathjax = "configured, but its script did not load";
  }
  // TeX that reached the page as text: outside maths, code and scripts, "$$" or a TeX command
  const rawTex = [];
  const walker = document.createTreeWalker(document.querySelector("main") || document.body, NodeFilter.SHOW_TEXT);
  const notProse = "pre, code, script, style, textarea, .math, mjx-container, .highlight, .output";
  const tex = /\$\$|\\[A-Za-z]{2,}/;   // prose has no backslash commands; TeX that missed MathJax does
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement && !node.parentElement.closest(notProse) && tex.test(node.textContent)) {
      rawTex.push(node.textContent.trim().slice(0, 80));
    }
  }
  // a "$" left beside a typeset maths element: "$$" inside a paragraph paired as "$" + "$...$" + "$"
  for (const el of maths) {
    const before = el.previousSibling, after = el.nextSibling;
    if ((before && before.nodeType === Node.TEXT_NODE && /\$\s*$/.test(before.textContent)) ||
        (after && after.nodeType === Node.TEXT_NODE && /^\s*\$/.test(after.textContent))) {
      rawTex.push("a stray $ beside " + el.textContent.trim().slice(0, 60));
    }
  }
  // display equations wider than the text column (cut off, or a scroll bar under them)
  const wideMaths = Array.from(document.querySelectorAll("mjx-container[display='true']"))
    .filter((el) => el.parentElement && el.scrollWidth > el.parentElement.clientWidth + 2)
    .map((el) => `${el.scrollWidth} px in ${el.parentElement.clientWidth} px: ` +
                 (el.parentElement.textContent || "").trim().slice(0, 50));
  // tables wider than the text column (the last columns cut off or scrolled out of sight)
  const column = document.querySelector("main article") || document.querySelector("main") || document.body;
  const wideTables = Array.from(document.querySelectorAll("main table"))
    .filter((el) => el.getBoundingClientRect().width > column.clientWidth + 2)
    .map((el) => `${Math.round(el.getBoundingClientRect().width)} px in ${column.clientWidth} px: ` +
                 (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 50));
  const describe = (el) => (el.currentSrc || el.src || el.getAttribute("src") || el.outerHTML.slice(0, 80)).slice(0, 120);
  return {
    title: document.title,
    brokenImages: images.filter((img) => !(img.complete && img.naturalWidth > 0)).map(describe),
    brokenVideos: videos.filter((v) => v.error || v.readyState < 1)
                        .map((v) => describe(v) + (v.error ? " (media error " + v.error.code + ")" : " (no metadata)")),
    images: images.length,
    videos: videos.length,
    maths: maths.length,
    untypesetMaths: maths.filter((el) => !el.querySelector("mjx-container")).map((el) => el.textContent.trim().slice(0, 60)),
    mathErrors: Array.from(document.querySelectorAll("mjx-merror")).map((el) => (el.getAttribute("data-mjx-error") || el.textContent).slice(0, 80)),
    mathjax: mathjax,
    rawTex: rawTex,
    wideMaths: wideMaths,
    wideTables: wideTables,
    colabLinks: Array.from(document.querySelectorAll("a[href*='colab.research.google.com']")).map((a) => a.href),
  };
})()
"""


@dataclass
class PageReport:
    path: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class DevTools:
    """A minimal Chrome DevTools Protocol client over the browser's websocket (flat sessions)."""

    def __init__(self, url: str):
        self.ws = websocket.create_connection(url, suppress_origin=True, timeout=60)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, f"{method} got no answer within {timeout:.0f} s")
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float) -> bool:
        """Wait for an event; True when it came (it stays in self.events)."""
        deadline = time.monotonic() + timeout
        while not any(e["method"] == method and e.get("sessionId") == session for e in self.events):
            try:
                event = self._receive(deadline, "")
            except TimeoutError:
                return False
            if "method" in event:
                self.events.append(event)
        return True

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive during the next `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                event = self._receive(deadline, "")
            except TimeoutError:
                return
            if "method" in event:
                self.events.append(event)

    def _receive(self, deadline: float, message: str) -> dict:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(message)
        self.ws.settimeout(remaining)
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            raise TimeoutError(message) from None

    def close(self) -> None:
        self.ws.close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def start_chromium(executable: str, profile: Path, offline: bool) -> tuple[subprocess.Popen, str]:
    flags = CHROMIUM_FLAGS + [f"--user-data-dir={profile}", "--window-size={width},{height}".format(**VIEWPORT)]
    if offline:
        flags.append(OFFLINE_RULES)
    with open(profile.parent / "chromium.log", "wb") as log:
        process = subprocess.Popen([executable, *flags, "about:blank"], stdout=log, stderr=subprocess.STDOUT)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if port_file.exists():
            lines = port_file.read_text().split()
            if len(lines) >= 2:
                return process, f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        time.sleep(0.1)
    process.kill()
    output = (profile.parent / "chromium.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{executable} did not open its DevTools port within 60 s. Its output:\n{output}")


def list_pages(html_dir: Path) -> list[Path]:
    pages = []
    for path in sorted(html_dir.rglob("*.html")):
        relative = path.relative_to(html_dir)
        if relative.parts[0].startswith("_") or relative.name in NOT_PAGES:
            continue
        pages.append(relative)
    return pages


def redirect_target(path: Path) -> str | None:
    """Jupyter Book writes index.html as a bare <meta http-equiv="Refresh"> to the root page."""
    text = path.read_text(errors="replace")
    if len(text) < 2000 and 'http-equiv="refresh"' in text.lower():
        start = text.lower().index("url=") + 4
        return text[start:].split('"')[0].strip()
    return None


@functools.cache
def unreachable_from_here(host: str, port: int) -> str | None:
    """Why this machine cannot reach host:port (no DNS, no route, ...), or None if it can."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        return f"{host} does not resolve here ({error})"
    reason = f"{host} has no address here"
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.settimeout(5)
                probe.connect(address)
                return None
        except OSError as error:
            reason = f"{host}:{port} does not answer here ({error})"
    return reason


def classify_external(url: str, error_text: str, offline: bool) -> str | None:
    """A warning line when an outside request failed because there is no network; None: a real error."""
    if not any(code in error_text for code in NETWORK_ERRORS):
        return None
    if offline:
        return f"outside request blocked (offline check): {url} [{error_text}]"
    parts = urlsplit(url)
    why = unreachable_from_here(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    return f"outside request failed, no network: {url} [{error_text}; {why}]" if why else None


def check_page(devtools: DevTools, base: str, relative: Path, html_dir: Path, shots: Path, offline: bool) -> PageReport:
    report = PageReport(str(relative))
    url = f"{base}/{relative.as_posix()}"
    target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = devtools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            devtools.call(f"{domain}.enable", session=session)
        devtools.call(
            "Emulation.setDeviceMetricsOverride", {**VIEWPORT, "deviceScaleFactor": 1, "mobile": False}, session=session
        )
        devtools.events = [e for e in devtools.events if e.get("sessionId") != session]
        navigation = devtools.call("Page.navigate", {"url": url}, session=session)
        if navigation.get("errorText"):
            report.errors.append(f"navigation failed: {navigation['errorText']}")
            return report
        if not devtools.wait_for("Page.loadEventFired", session, timeout=60):
            report.errors.append("the load event did not fire within 60 s")
        probe = devtools.call(
            "Runtime.evaluate",
            {"expression": PAGE_PROBE, "awaitPromise": True, "returnByValue": True},
            session=session,
            timeout=90,
        )
        if "exceptionDetails" in probe:
            report.errors.append(f"page probe failed: {probe['exceptionDetails'].get('text')}")
            facts = {}
        else:
            facts = probe["result"]["value"]
        devtools.drain(0.5)
        check_facts(report, facts, relative, html_dir)
        screenshot(devtools, session, shots / relative.with_suffix(".png"), report)
        check_events(report, [e for e in devtools.events if e.get("sessionId") == session], base, offline)
    finally:
        devtools.events = [e for e in devtools.events if e.get("sessionId") != session]
        devtools.call("Target.closeTarget", {"targetId": target})
    return report


def check_facts(report: PageReport, facts: dict, relative: Path, html_dir: Path) -> None:
    if not facts:
        return
    for image in facts["brokenImages"]:
        report.errors.append(f"broken image: {image}")
    for video in facts["brokenVideos"]:
        report.errors.append(f"broken video: {video}")
    if facts["maths"]:
        if facts["mathjax"] != "ready":
            report.errors.append(f"{facts['maths']} maths elements, but MathJax: {facts['mathjax']}")
        for tex in facts["untypesetMaths"]:
            report.errors.append(f"maths not typeset: {tex}")
        for message in facts["mathErrors"]:
            report.errors.append(f"TeX error: {message}")
    for text in facts["wideTables"]:
        report.warnings.append(f"table wider than the column: {text}")
    for text in facts["wideMaths"]:
        report.warnings.append(f"display equation wider than the column: {text}")
    for text in facts["rawTex"]:
        report.errors.append(f"TeX left as text (Markdown broke an equation apart?): {text}")
    notebook = Path("_sources") / relative.with_suffix(".ipynb")
    if (html_dir / notebook).exists():
        wanted = relative.with_suffix(".ipynb").as_posix()
        if not any(link.endswith("/" + wanted) for link in facts["colabLinks"]):
            found = ", ".join(facts["colabLinks"]) or "none"
            report.errors.append(f"notebook page without a Colab launch link to {wanted} (Colab links: {found})")
    report.notes.append(f"{facts['images']} img, {facts['videos']} video, {facts['maths']} math")


def check_events(report: PageReport, events: list[dict], base: str, offline: bool) -> None:
    requests: dict[str, str] = {}
    external_failures: set[str] = set()
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            requests[params["requestId"]] = params["request"]["url"]
        elif method == "Network.loadingFailed":
            request_url = requests.get(params["requestId"], "?")
            if params.get("canceled") or request_url.startswith("data:"):
                continue  # e.g. a <video> dropping a range request it no longer needs
            if request_url.startswith(base):
                report.errors.append(f"request failed: {request_url} [{params.get('errorText')}]")
            else:
                warning = classify_external(request_url, params.get("errorText", ""), offline)
                if warning:
                    external_failures.add(request_url)
                    report.warnings.append(warning)
                else:
                    report.errors.append(f"outside request failed: {request_url} [{params.get('errorText')}]")
        elif method == "Network.responseReceived":
            status = params["response"]["status"]
            if params["response"]["url"] == f"{base}/favicon.ico" and params.get("type") == "Other":
                continue  # the browser's own guess at an icon, which the site does not declare
            if status >= 400:
                report.errors.append(f"HTTP {status}: {params['response']['url']}")
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text", "")
            where = f" ({details.get('url', '')}:{details.get('lineNumber', 0) + 1})" if details.get("url") else ""
            report.errors.append(f"JavaScript exception: {text.splitlines()[0] if text else '?'}{where}")
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            report.errors.append(f"console.{params['type']}: {text[:300]}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if entry.get("source") == "network" and entry.get("url") in external_failures:
                continue  # already listed as a warning above
            if entry.get("source") == "network" and entry.get("url", "").startswith(base):
                continue  # already listed as a failed request above
            report.errors.append(
                f"browser log ({entry.get('source')}): {entry.get('text', '')[:300]} {entry.get('url', '')}"
            )


def screenshot(devtools: DevTools, session: str, path: Path, report: PageReport) -> None:
    """Save the whole page as a PNG: the viewport is made as tall as the page, then captured.

    (Chromium's captureBeyondViewport lays out the theme's sticky sidebars wrongly; a tall viewport
    shows the page as a reader scrolling through it would see it.)
    """
    height = VIEWPORT["height"]
    for _ in range(3):  # the page may grow once it is laid out taller (lazy images, MathJax)
        metrics = devtools.call("Page.getLayoutMetrics", session=session)
        content = int((metrics.get("cssContentSize") or metrics["contentSize"])["height"])
        wanted = min(max(content, VIEWPORT["height"]), MAX_SCREENSHOT_HEIGHT)
        if wanted == height:
            break
        height = wanted
        devtools.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": VIEWPORT["width"], "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        devtools.drain(0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A page taller than one capture is saved in parts, scrolled as a reader would: NAME.png, NAME.2.png, ...
    parts = 0
    for top in range(0, max(content, 1), MAX_SCREENSHOT_HEIGHT):
        if top:
            devtools.call("Runtime.evaluate", {"expression": f"window.scrollTo(0, {top})"}, session=session)
            devtools.drain(0.3)
        shot = devtools.call("Page.captureScreenshot", {"format": "png"}, session=session, timeout=120)
        parts += 1
        name = path if parts == 1 else path.with_name(f"{path.stem}.{parts}{path.suffix}")
        name.write_bytes(base64.b64decode(shot["data"]))
    if parts > 1:
        report.notes.append(f"screenshot in {parts} parts of up to {MAX_SCREENSHOT_HEIGHT}px ({content}px)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "html_dir", nargs="?", default="_build/html", type=Path, help="the built site (default: _build/html)"
    )
    parser.add_argument(
        "--screenshots", type=Path, help="where to save the screenshots (default: HTML_DIR/../screenshots)"
    )
    parser.add_argument(
        "--chromium",
        default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        help="the Chromium executable (default: $CHROMIUM or /usr/bin/chromium)",
    )
    parser.add_argument(
        "--allow-network",
        action="store_true",
        help="let the browser reach outside hosts (by default only 127.0.0.1 resolves)",
    )
    args = parser.parse_args(argv)

    html_dir = args.html_dir.resolve()
    if not (html_dir / "index.html").exists():
        print(f"check_site: {html_dir} holds no index.html; build the book first (make book)", file=sys.stderr)
        return 2
    executable = shutil.which(args.chromium)
    if not executable:
        print(
            f"check_site: no Chromium at {args.chromium}; install Debian's `chromium` package or pass --chromium",
            file=sys.stderr,
        )
        return 2
    shots = (args.screenshots or html_dir.parent / "screenshots").resolve()
    shutil.rmtree(shots, ignore_errors=True)
    offline = not args.allow_network

    server, port = serve(html_dir)
    base = f"http://127.0.0.1:{port}"
    workdir = Path(tempfile.mkdtemp(prefix="check_site-"))
    (workdir / "profile").mkdir()
    process = None
    reports: list[PageReport] = []
    started = time.monotonic()
    try:
        process, ws_url = start_chromium(executable, workdir / "profile", offline)
        devtools = DevTools(ws_url)
        for relative in list_pages(html_dir):
            target = redirect_target(html_dir / relative)
            if target is not None:
                report = PageReport(str(relative), notes=[f"redirect to {target}"])
                if not (html_dir / relative).parent.joinpath(unquote(target.split("#")[0])).exists():
                    report.errors.append(f"redirects to {target}, which does not exist")
            else:
                report = check_page(devtools, base, relative, html_dir, shots, offline)
            reports.append(report)
            status = "FAIL" if report.errors else "OK  "
            print(f"{status} {report.path}  ({'; '.join(report.notes)})", flush=True)
            for line in report.errors:
                print(f"       error: {line}")
            for line in report.warnings:
                print(f"       warning: {line}")
        devtools.call("Browser.close", timeout=10)
        devtools.close()
    except (RuntimeError, TimeoutError, OSError, websocket.WebSocketException) as error:
        print(f"check_site: could not run the check: {error}", file=sys.stderr)
        return 2
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        server.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)

    failed = [r for r in reports if r.errors]
    warned = sum(len(r.warnings) for r in reports)
    elapsed = time.monotonic() - started
    if failed:
        print(f"check_site: {len(failed)} of {len(reports)} pages have problems ({elapsed:.0f} s)")
        return 1
    print(f"check_site: all {len(reports)} pages clean, {warned} warnings; screenshots in {shots} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
