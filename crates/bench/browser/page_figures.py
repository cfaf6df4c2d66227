"""W9 of baa-bench: the run page in a headless chromium, driven by
Playwright for Python (the browser tests' venv, tests/browser/.venv).

The harness (crates/bench/src/workloads/browser.rs) starts baa-logd, writes
the runs and runs this script with the venv's Python:

    page_figures.py --base-url http://127.0.0.1:PORT --chromium /usr/bin/chromium

The script launches chromium, prints one JSON line (`{"ready": true, ...}`
or `{"error": "..."}`), then reads one JSON command a line on stdin and
answers each with one JSON line on stdout, until stdin closes. Anything
else it has to say goes to stderr. Every answer has `"ok": true` or
`"ok": false, "error": "..."`; every wait has a deadline.

Commands:

- `{"cmd": "open", "path": "/runs/T/R", "last_line": "1000001",
  "navigations": 5, "timeout_s": 60}`: navigates a fresh page (a new
  browser context, so nothing cached) to the run `navigations` times and
  answers `{"open_ms": [...]}`: for each, the time from the start of the
  navigation until the row of the last line,
  `div.line[data-line="<last_line>"]`, is in the DOM and inside the
  visible part of `#log`. A script added before any of the page's own
  runs (CDP `Page.addScriptToEvaluateOnNewDocument`, which the page's CSP
  does not apply to) checks that on every animation frame and notes
  `performance.now()`, which counts from the start of the navigation; so
  Playwright's own round trips are not in the figure. The last page stays
  open for `scroll`.
- `{"cmd": "scroll", "first_line": "1", "timeout_s": 180}`: on that page,
  scrolls from the end to the start with the mouse wheel over `#log` (the
  page's own scrolling; it loads earlier pages as the view nears the top
  of what it holds) until the row of `first_line` is in `#log`, or the
  time is up. Answers how far it got (the smallest line number whose row
  was in `#log`), the steps and seconds it took, the most DOM nodes under
  `#log` seen after any step, and then, after a garbage collection
  (CDP `HeapProfiler.collectGarbage`), the JS heap (CDP
  `Runtime.getHeapUsage`), the DOM nodes under `#log` and the document's
  counters (CDP `Memory.getDOMCounters`). The heap after the tail loaded
  (before scrolling) is measured the same way, for comparison.
- `{"cmd": "watch", "path": "/runs/T/R"}`: opens the (live) run on a fresh
  page, injects a MutationObserver on `#log` (by CDP evaluation, which
  the CSP does not block either) that notes, for every `div.line` whose
  text starts with a send time (`t=<16 digits> i=<12 digits>`), the wall
  clock when a row with that index first appeared
  (`performance.timeOrigin + performance.now()`, in ms), and makes sure the
  page follows the end (the `End` key, as a reader would press it).
  Answers once the observer is in place.
- `{"cmd": "collect", "until_index": N, "timeout_s": 20}`: waits until a
  row with index `until_index` appeared (or the time is up), then answers
  `{"seen": [[index, sent_us, seen_ms], ...]}` for every line the
  observer noted, and the DOM nodes under `#log`.
"""

import argparse
import json
import sys
import time
import traceback

# The viewport of every page: a laptop's window.
VIEWPORT = {"width": 1280, "height": 800}

# A pause between checks in a Python-side wait, seconds.
POLL_S = 0.05

# Runs on every new document before the page's own scripts: notes the
# time (ms since the start of the navigation) at which the row of the last
# line is in the DOM and within the visible part of #log. LAST_LINE is
# replaced by the line's id.
TAIL_PROBE = """
(() => {
  const last = LAST_LINE;
  const check = () => {
    const log = document.getElementById("log");
    const row = log && log.querySelector(`div.line[data-line="${last}"]`);
    if (row) {
      const box = log.getBoundingClientRect();
      const r = row.getBoundingClientRect();
      if (r.height > 0 && r.top < box.bottom && r.bottom > box.top) {
        window.__w9TailAt = performance.now();
        return;
      }
    }
    requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})();
"""

# Installed with page.evaluate on the live run's page: records, per line
# index, the send time the line carries and the wall clock (ms) at which a
# row with it first appeared under #log.
LINE_OBSERVER = """
() => {
  if (window.__w9Seen) return true;
  const seen = new Map();
  window.__w9Seen = seen;
  window.__w9MaxIndex = -1;
  const pattern = /^t=(\\d{16}) i=(\\d{12})/;
  const note = (row, now) => {
    const text = row.querySelector(".text");
    const m = pattern.exec((text || row).textContent.replace(/^\\s+/, ""))
      || pattern.exec(row.textContent);
    if (!m) return;
    const index = Number(m[2]);
    if (seen.has(index)) return;
    seen.set(index, [index, Number(m[1]), now]);
    if (index > window.__w9MaxIndex) window.__w9MaxIndex = index;
  };
  const visit = (node, now) => {
    if (node.nodeType !== 1) return;
    if (node.matches("div.line")) note(node, now);
    else for (const row of node.querySelectorAll("div.line")) note(row, now);
  };
  const log = document.getElementById("log");
  const observer = new MutationObserver((records) => {
    const now = performance.timeOrigin + performance.now();
    for (const record of records) {
      for (const node of record.addedNodes) visit(node, now);
    }
  });
  observer.observe(log, { childList: true, subtree: true });
  visit(log, performance.timeOrigin + performance.now());
  return true;
}
"""

# Counts the nodes (elements and text) under #log.
COUNT_NODES = """
() => {
  const log = document.getElementById("log");
  if (!log) return 0;
  const walker = document.createTreeWalker(log, NodeFilter.SHOW_ALL);
  let n = 0;
  while (walker.nextNode()) n++;
  return n;
}
"""

# The smallest and largest line (by its seq, then its index within the
# entry) whose row is under #log, as [seq, idx, id] pairs.
ROW_RANGE = """
() => {
  const rows = document.querySelectorAll("#log div.line[data-line]");
  let lo = null, hi = null;
  for (const row of rows) {
    const id = row.dataset.line;
    const [s, i] = id.split(".");
    const key = [Number(s), Number(i || 0), id];
    if (!lo || key[0] < lo[0] || (key[0] === lo[0] && key[1] < lo[1])) lo = key;
    if (!hi || key[0] > hi[0] || (key[0] === hi[0] && key[1] > hi[1])) hi = key;
  }
  return { lo, hi, rows: rows.length };
}
"""


def say(message):
    """Writes one JSON line to stdout for the harness."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def log(text):
    """A note on stderr (the harness keeps it for a failure's report)."""
    sys.stderr.write(f"page_figures: {text}\n")
    sys.stderr.flush()


class Bench:
    """The browser and the page the commands work on."""

    def __init__(self, browser, base_url):
        self.browser = browser
        self.base_url = base_url.rstrip("/")
        # The page of the last `open`, for `scroll`.
        self.context = None
        self.page = None
        # The live run's page, for `collect`.
        self.watch_context = None
        self.watch_page = None
        # Console errors and uncaught errors of the pages, for the report.
        self.errors = []

    def new_page(self):
        """A fresh context (no cache, no cookies) and page."""
        context = self.browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.on(
            "console",
            lambda message: message.type == "error" and self.errors.append(message.text),
        )
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        return context, page

    def close_open(self):
        """Closes the page of the last `open`."""
        if self.context is not None:
            self.context.close()
        self.context = self.page = None

    # === open ===

    def open(self, path, last_line, navigations, timeout_s):
        """Times navigations to a run until its last line is in view."""
        open_ms = []
        probe = TAIL_PROBE.replace("LAST_LINE", json.dumps(str(last_line)))
        for _ in range(max(1, navigations)):
            self.close_open()
            self.context, self.page = self.new_page()
            self.page.add_init_script(probe)
            self.page.goto(self.base_url + path, wait_until="commit")
            at = wait_for_value(self.page, "window.__w9TailAt", timeout_s)
            if at is None:
                raise RuntimeError(
                    f"line {last_line} was not in view within {timeout_s} s "
                    f"(rows under #log: {self.page.evaluate(ROW_RANGE)})"
                )
            open_ms.append(at)
        return {"open_ms": open_ms}

    # === scroll ===

    def heap(self, cdp):
        """The JS heap after a garbage collection, and the DOM's counters."""
        cdp.send("HeapProfiler.collectGarbage")
        usage = cdp.send("Runtime.getHeapUsage")
        counters = cdp.send("Memory.getDOMCounters")
        return {
            "heap_used_bytes": usage.get("usedSize"),
            "heap_total_bytes": usage.get("totalSize"),
            "log_nodes": self.page.evaluate(COUNT_NODES),
            "document_nodes": counters.get("nodes"),
            "listeners": counters.get("jsEventListeners"),
        }

    def scroll(self, first_line, timeout_s):
        """Wheels from the end of the open run to its start."""
        page = self.page
        if page is None:
            raise RuntimeError("scroll needs an open page")
        cdp = page.context.new_cdp_session(page)
        at_open = self.heap(cdp)
        box = page.locator("#log").bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        target = int(str(first_line).split(".")[0])
        start = time.monotonic()
        deadline = start + timeout_s
        steps = 0
        max_nodes = page.evaluate(COUNT_NODES)
        rows = page.evaluate(ROW_RANGE)
        lowest = rows["lo"]
        reached = False
        while time.monotonic() < deadline:
            # A wheel turn far larger than the rows the page holds: the view
            # goes to the top of what it holds, and the page loads the page
            # of entries before it, keeping the reader's line in place.
            page.mouse.wheel(0, -1_000_000)
            steps += 1
            # Waits (bounded) for rows further up to appear.
            step_deadline = min(deadline, time.monotonic() + 5)
            while True:
                rows = page.evaluate(ROW_RANGE)
                lo = rows["lo"]
                if lo is not None and (lowest is None or lo[:2] < lowest[:2]):
                    lowest = lo
                    break
                if time.monotonic() > step_deadline:
                    break
                page.wait_for_timeout(POLL_S * 1000)
            max_nodes = max(max_nodes, page.evaluate(COUNT_NODES))
            if lowest is not None and lowest[0] <= target:
                reached = True
                break
        secs = time.monotonic() - start
        # Let the last load settle before the heap is read.
        page.wait_for_timeout(500)
        at_start = self.heap(cdp)
        max_nodes = max(max_nodes, at_start["log_nodes"])
        cdp.detach()
        return {
            "reached_start": reached,
            "lowest_line": lowest[2] if lowest else None,
            "lowest_seq": lowest[0] if lowest else None,
            "steps": steps,
            "secs": secs,
            "max_log_nodes": max_nodes,
            "at_open": at_open,
            "at_start": at_start,
            "viewport": VIEWPORT,
        }

    # === live ===

    def watch(self, path, timeout_s):
        """Opens the live run with the line observer in place, following."""
        self.watch_context, self.watch_page = self.new_page()
        page = self.watch_page
        page.goto(self.base_url + path, wait_until="domcontentloaded")
        page.wait_for_selector("#log", state="attached", timeout=timeout_s * 1000)
        page.evaluate(LINE_OBSERVER)
        # The page follows the end of a live run by itself; End makes sure,
        # as a reader would.
        page.locator("#log").focus()
        page.keyboard.press("End")
        return {"follow": page.evaluate(
            "() => { const f = document.getElementById('follow'); return f ? f.checked : null; }"
        )}

    def collect(self, until_index, timeout_s):
        """Waits for the row of `until_index`, then returns what was seen."""
        page = self.watch_page
        if page is None:
            raise RuntimeError("collect needs a watched page")
        deadline = time.monotonic() + timeout_s
        while page.evaluate("window.__w9MaxIndex") < until_index:
            if time.monotonic() > deadline:
                break
            page.wait_for_timeout(POLL_S * 1000)
        seen = page.evaluate("[...window.__w9Seen.values()]")
        nodes = page.evaluate(COUNT_NODES)
        self.watch_context.close()
        self.watch_context = self.watch_page = None
        return {"seen": seen, "log_nodes": nodes}


def wait_for_value(page, expression, timeout_s):
    """Evaluates `expression` until it is not undefined/null; None after
    `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(expression)
        if value is not None:
            return value
        if time.monotonic() > deadline:
            return None
        page.wait_for_timeout(POLL_S * 1000)


def serve(bench):
    """Answers commands from stdin until it closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            command = json.loads(line)
            name = command.get("cmd")
            if name == "open":
                answer = bench.open(
                    command["path"],
                    command["last_line"],
                    int(command.get("navigations", 1)),
                    float(command.get("timeout_s", 60)),
                )
            elif name == "scroll":
                answer = bench.scroll(command["first_line"], float(command.get("timeout_s", 180)))
            elif name == "watch":
                answer = bench.watch(command["path"], float(command.get("timeout_s", 30)))
            elif name == "collect":
                answer = bench.collect(
                    int(command["until_index"]), float(command.get("timeout_s", 20))
                )
            else:
                raise ValueError(f"unknown command {name!r}")
            answer["ok"] = True
            answer["page_errors"] = bench.errors[:5]
            bench.errors.clear()
            say(answer)
        except Exception as err:  # noqa: BLE001: every failure is an answer
            log(traceback.format_exc())
            say({"ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0]})


def main():
    """Launches chromium, says whether it is ready, serves commands."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--chromium", required=True)
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        say({"error": f"no Playwright in this Python: {err}"})
        return 0
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=args.chromium,
                headless=True,
                # As root (CI containers), chromium refuses to start sandboxed.
                args=["--no-sandbox"],
                timeout=30_000,
            )
        except Exception as err:  # noqa: BLE001: reported, not raised
            say({"error": f"chromium did not start: {err}".splitlines()[0]})
            return 0
        say({"ready": True, "browser": browser.version})
        try:
            serve(Bench(browser, args.base_url))
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
