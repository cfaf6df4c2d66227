"""The run list and run page in chromium, against a real baa-logd: live
lines, ANSI styles, untrusted text, line links, groups, filters, search
beyond the loaded window, the raw download, a run's artifacts, a server
restart while following, and signing in. Screenshots go to target/browser/."""

import os
import random
import re
import subprocess
from urllib.parse import quote

from playwright.sync_api import expect

from conftest import LiveExec, allow_errors, cli, shot, token_server, wait_until

# The run page polls nothing and gets lines over SSE; a line must show
# within this many milliseconds of being stored.
LIVE_TIMEOUT_MS = 10_000


def run_url(server, task, run, fragment=""):
    """The page of a run."""
    return f"{server.url}/runs/{quote(task, safe='')}/{quote(run, safe='')}{fragment}"


def exec_sh(server, task, run, script, *extra, check=True):
    """Runs `sh -c SCRIPT` as run TASK/RUN (pipes, no terminal), to its end."""
    return cli(
        server, "exec", "--task", task, "--run", run, "--no-pty", *extra, "--", "sh", "-c", script,
        check=check,
    )


def entries(page, server, task, run):
    """Every entry of a run, through the page's own API."""
    out = []
    seq = 1
    while True:
        response = page.request.get(
            f"{server.url}/api/runs/{quote(task, safe='')}/{quote(run, safe='')}/entries"
            f"?from_seq={seq}&limit=20000"
        )
        assert response.ok, response.text()
        page_ = response.json()
        out.extend(page_["entries"])
        if not page_["more"]:
            return out
        seq = page_["nextSeq"]


def line_ids(all_entries):
    """The id of each stdout/stderr line by its text, as the web spec
    defines it: the seq of the entry the line starts in, plus `.N` for the
    N-th line starting in that entry (N > 0)."""
    ids = {}
    at_start = {"stdout": True, "stderr": True}
    for entry in all_entries:
        channel = entry["channel"]
        if channel not in at_start:
            continue
        text = entry["text"]
        pos = 0
        if not at_start[channel]:
            nl = text.find("\n")
            if nl < 0:
                continue
            pos = nl + 1
        index = 0
        at_start[channel] = False
        while pos < len(text):
            nl = text.find("\n", pos)
            end = len(text) if nl < 0 else nl
            ids.setdefault(text[pos:end], str(entry["seq"]) if index == 0 else f"{entry['seq']}.{index}")
            index += 1
            if nl < 0:
                break
            pos = nl + 1
        at_start[channel] = text.endswith("\n")
    return ids


def shown_texts(page):
    """The text of every line row in the DOM, in order."""
    return page.locator("#log div.line span.text").all_text_contents()


def line_row(page, text):
    """The row whose whole text is `text`."""
    return page.locator("#log div.line").filter(
        has=page.locator("span.text", has_text=re.compile(f"^{re.escape(text)}$"))
    )


def test_a_line_written_while_the_page_is_open_appears(server, page):
    """A live run's page shows a line stored after it opened, following
    the end, and the status badge turns final when the run ends."""
    live = LiveExec(server, "t1", "live")
    live.line("before the page")
    wait_until(lambda: "before" in cli(server, "cat", "t1/live").stdout, message="the first line")
    page.goto(run_url(server, "t1", "live"))
    expect(line_row(page, "before the page")).to_be_visible()
    expect(page.locator("#status")).to_have_attribute("data-status", "running")
    expect(page.locator("#follow")).to_be_checked()
    live.line("written while the page is open")
    expect(line_row(page, "written while the page is open")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    # Scrolling up turns following off; End turns it on again.
    live.write("".join(f"filler {i}\n" for i in range(200)))
    expect(line_row(page, "filler 199")).to_be_in_viewport(timeout=LIVE_TIMEOUT_MS)
    page.locator("#log").hover()
    page.mouse.wheel(0, -2000)
    expect(page.locator("#follow")).not_to_be_checked()
    live.line("while reading above")
    page.wait_for_timeout(300)
    expect(line_row(page, "filler 199")).not_to_be_in_viewport()
    page.keyboard.press("End")
    expect(page.locator("#follow")).to_be_checked()
    expect(line_row(page, "while reading above")).to_be_in_viewport()
    live.finish(0)
    expect(page.locator("#status")).to_have_attribute("data-status", "completed", timeout=LIVE_TIMEOUT_MS)


def test_ansi_sequences_become_styles_and_carriage_returns_repaint(server, page):
    """SGR colours become classes (16 colours) and CSSOM colours (256,
    truecolor); bold and underline are classes; `\\r` repaints, `ESC[K`
    erases, and an OSC title never shows."""
    exec_sh(
        server, "t1", "ansi",
        r"printf '\033[31mred\033[0m \033[1;4mbold\033[0m \033[38;5;208morange\033[0m "
        r"\033[38;2;1;2;3mtrue\033[0m\n50%%\r100%%\nabcdef\rXY\nlong\rs\033[K\n\033]0;title\007after osc\n'",
    )
    page.goto(run_url(server, "t1", "ansi"))
    expect(page.locator("span.fg-1", has_text="red")).to_be_visible()
    expect(page.locator("span.bold.underline", has_text="bold")).to_be_visible()
    orange = page.locator("span", has_text=re.compile("^orange$"))
    assert orange.evaluate("el => el.style.color") == "rgb(255, 135, 0)"
    truecolor = page.locator("span", has_text=re.compile("^true$"))
    assert truecolor.evaluate("el => getComputedStyle(el).color") == "rgb(1, 2, 3)"
    texts = shown_texts(page)
    assert "red bold orange true" in texts
    for shown in ["100%", "XYcdef", "s", "after osc"]:
        assert shown in texts, texts
    assert not any("\x1b" in t or "\r" in t for t in texts)


def test_markup_in_a_line_is_shown_as_text_and_runs_nothing(server, page):
    """An `<img onerror>` line shows as those characters: no element is
    made from it and no dialog opens."""
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    exec_sh(server, "t1", "xss", "echo '<img src=x onerror=alert(1)>'; echo '<script>alert(2)</script>'")
    page.goto(run_url(server, "t1", "xss"))
    expect(line_row(page, "<img src=x onerror=alert(1)>")).to_be_visible()
    expect(line_row(page, "<script>alert(2)</script>")).to_be_visible()
    page.wait_for_timeout(300)
    assert page.locator("#log img, #log script").count() == 0
    assert page.locator("img").count() == 0
    assert dialogs == []


def test_a_line_link_scrolls_to_and_highlights_the_line(server, page):
    """`#L<id>` on a finished run of 20,000 lines scrolls to that line
    and marks it; clicking another line's number marks that one."""
    exec_sh(server, "t1", "long", "seq 1 20000 | sed 's/^/row /'")
    ids = line_ids(entries(page, server, "t1", "long"))
    target = ids["row 1234"]
    page.goto(run_url(server, "t1", "long", f"#L{target}"))
    row = page.locator(f'#log div.line[data-line="{target}"]')
    expect(row).to_have_class(re.compile(r"\bhighlight\b"))
    expect(row).to_be_in_viewport()
    expect(row.locator("span.text")).to_have_text("row 1234")
    assert page.locator("#log div.line").count() < 1000, "the log must be virtualised"
    other = page.locator(f'#log div.line[data-line="{ids["row 1236"]}"] a.ln')
    other.click()
    expect(page.locator("#log div.line.highlight span.text")).to_have_text("row 1236")
    assert page.url.endswith(f"#L{ids['row 1236']}")


def test_a_line_link_on_a_live_run_waits_for_the_line(server, page):
    """On a live run, `#L<id>` marks a line that exists, and for one that
    is not written yet, waits and marks it when it comes."""
    live = LiveExec(server, "t1", "live")
    for i in range(5):
        live.line(f"early {i}")
    wait_until(lambda: "early 4" in cli(server, "cat", "t1/live").stdout, message="the early lines")
    ids = line_ids(entries(page, server, "t1", "live"))
    page.goto(run_url(server, "t1", "live", f"#L{ids['early 2']}"))
    expect(page.locator("#log div.line.highlight span.text")).to_have_text("early 2")
    # The next chunk will be the run's next entry.
    last = max(int(i.split(".")[0]) for i in ids.values())
    page.goto(run_url(server, "t1", "live", f"#L{last + 1}"))
    expect(page.locator("#log-note")).to_contain_text("Waiting")
    live.line("late line")
    expect(page.locator("#log div.line.highlight span.text")).to_have_text("late line", timeout=LIVE_TIMEOUT_MS)
    live.finish(0)


def test_groups_fold_and_unfold(server, page):
    """`::group::` and Buildkite headers become fold buttons; a collapsed
    group's lines are not shown, the end marker never is."""
    exec_sh(
        server, "t1", "groups",
        "echo before; echo '::group::Install deps'; echo inside-gha; echo '::endgroup::'; "
        "echo '+++ Open section'; echo inside-open; echo '--- Closed section'; echo inside-closed",
    )
    page.goto(run_url(server, "t1", "groups"))
    header = page.locator("#log div.line.group-header", has_text="Install deps")
    expect(header).to_be_visible()
    expect(header.locator("span.text")).to_have_text("Install deps")
    fold = header.locator("button.fold")
    expect(fold).to_have_attribute("aria-expanded", "false")
    expect(line_row(page, "inside-gha")).to_have_count(0)
    expect(line_row(page, "inside-open")).to_be_visible()
    expect(line_row(page, "inside-closed")).to_have_count(0)
    assert "::endgroup::" not in shown_texts(page)
    fold.click()
    expect(fold).to_have_attribute("aria-expanded", "true")
    expect(line_row(page, "inside-gha")).to_be_visible()
    assert "::endgroup::" not in shown_texts(page)
    fold.click()
    expect(line_row(page, "inside-gha")).to_have_count(0)


def test_channel_filter_and_timestamps(server, page):
    """Unchecking a channel hides its lines; the timestamps box adds a
    time gutter."""
    exec_sh(server, "t1", "chan", "echo to-stdout; echo to-stderr >&2")
    page.goto(run_url(server, "t1", "chan"))
    expect(line_row(page, "to-stderr")).to_be_visible()
    expect(page.locator('#log div.line.worker').first).to_be_visible()
    page.locator("input[name=channel][value=stderr]").uncheck()
    expect(line_row(page, "to-stderr")).to_have_count(0)
    expect(line_row(page, "to-stdout")).to_be_visible()
    page.locator("input[name=channel][value=worker]").uncheck()
    expect(page.locator("#log div.line.worker")).to_have_count(0)
    page.locator("input[name=channel][value=stderr]").check()
    expect(line_row(page, "to-stderr")).to_be_visible()
    expect(page.locator("#log span.ts")).to_have_count(0)
    page.locator("#timestamps").check()
    expect(page.locator("#log span.ts").first).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
    # A focused checkbox keeps Space, but a letter is the page's: `t`
    # toggles timestamps off again, and from the log on again.
    page.keyboard.press("t")
    expect(page.locator("#timestamps")).not_to_be_checked()
    expect(page.locator("#log span.ts")).to_have_count(0)
    page.locator("#log").focus()
    page.keyboard.press("t")
    expect(page.locator("#log span.ts").first).to_be_visible()


# Python that waits until `baa-log exec` has read everything written to a
# pipe (`FIONREAD` counts the bytes a pipe holds, from either end): each
# write is then a read and an entry of its own, however busy the machine,
# where a pause alone lets a starved exec read many writes as one.
DRAINED = (
    "import fcntl, os, struct, termios, time\n"
    "def drained(fd):\n"
    "    while struct.unpack('i', fcntl.ioctl(fd, termios.FIONREAD, b'\\0' * 4))[0]:\n"
    "        time.sleep(0.0001)\n"
)

# Writes 50,000 lines `row N`, 4 to a write, each write read before the
# next, so that they are stored as 12,500 entries: more than the page loads
# at once (5,000).
MANY_ENTRIES = DRAINED + (
    "for i in range(1, 50001, 4):\n"
    "    os.write(1, ''.join(f'row {n}\\n' for n in range(i, i + 4)).encode())\n"
    "    drained(1)\n"
)


def test_search_finds_a_line_outside_the_loaded_window(server, page):
    """The server's search finds a line far from the tail the page opened
    on, outside the entries it loaded; the page loads a window around it
    and shows it, its match marked."""
    cli(server, "exec", "--task", "t1", "--run", "big", "--no-pty", "--", "python3", "-c", MANY_ENTRIES)
    page.goto(run_url(server, "t1", "big"))
    expect(line_row(page, "row 50000")).to_be_visible()
    info = page.locator("#window-info")
    expect(info).to_have_text(re.compile(r"^entries (\d{1,3}(,\d{3})*)–(\d{1,3}(,\d{3})*) of \3$"))
    first_loaded = int(re.match(r"entries ([\d,]+)", info.text_content()).group(1).replace(",", ""))
    assert first_loaded > 1000, "the run must have more entries than one page"
    assert line_row(page, "row 77").count() == 0
    page.locator("#search-regex").check()
    page.fill("#search", "^row 77$")
    page.press("#search", "Enter")
    expect(page.locator("#search-count")).to_have_text("1 of 1")
    row = line_row(page, "row 77")
    expect(row).to_be_in_viewport()
    expect(row.locator("mark.match")).to_have_text("row 77")
    expect(info).to_have_text(re.compile(r"^entries 1–"))
    page.locator("#search-regex").uncheck()
    page.fill("#search", "row 4999")
    page.press("#search", "Enter")
    expect(page.locator("#search-count")).to_have_text(re.compile(r"^\d+ of 11$"))
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    expect(page.locator("#log div.line.current-match mark.match").first).to_have_text("row 4999")
    assert page.locator("#log div.line").count() < 1000
    # Home and End move the window to either end of the run.
    page.keyboard.press("End")
    expect(line_row(page, "row 50000")).to_be_in_viewport()
    expect(info).to_have_text(re.compile(r"^entries [\d,]+–([\d,]+) of \1$"))
    page.keyboard.press("Home")
    expect(line_row(page, "row 1")).to_be_in_viewport()
    expect(info).to_have_text(re.compile(r"^entries 1–"))
    page.keyboard.press("G")
    expect(line_row(page, "row 50000")).to_be_in_viewport()


def test_raw_download_equals_cat(server, page):
    """The header's raw link downloads what `baa-log cat` prints."""
    exec_sh(server, "t1", "raw", r"printf 'one\n\033[32mtwo\033[0m\r\nno newline'; echo err >&2")
    page.goto(run_url(server, "t1", "raw"))
    with page.expect_download() as download:
        page.locator("#raw").click()
    with open(download.value.path(), "rb") as f:
        body = f.read()
    # As bytes: `cli` reads text, which would turn the `\r\n` into `\n`.
    cat = subprocess.run(
        [os.environ["BAA_LOG_BIN"], "--server", server.url, "cat", "t1/raw"],
        capture_output=True, check=True, timeout=30,
    )
    assert b"\r\n" in body
    assert body == cat.stdout


def download_bytes(page, link):
    """Clicks `link` and returns the bytes of the download it starts."""
    with page.expect_download() as download:
        link.click()
    with open(download.value.path(), "rb") as f:
        return download.value.suggested_filename, f.read()


def test_a_runs_artifacts_are_listed_with_their_sizes_and_download_whole(server, page, tmp_path):
    """Artifacts put into a live run show on its page once the run's state
    changes (as `exec --artifacts` uploads before the run ends), each with
    its size; its link downloads the exact bytes, and a name with markup
    is shown as text."""
    binary = tmp_path / "report.bin"
    binary.write_bytes(random.Random(7).randbytes(150_000))
    markup = tmp_path / "markup.txt"
    markup.write_bytes(b"<i>not markup</i>\n")
    live = LiveExec(server, "t1", "objs")
    live.line("building")
    page.goto(run_url(server, "t1", "objs"))
    expect(line_row(page, "building")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    objects = page.locator("#objects")
    expect(objects).to_be_hidden()

    cli(server, "artifact", "put", "t1/objs", binary)
    cli(server, "artifact", "put", "t1/objs", markup, "--as", "<b>x</b>.txt")
    assert live.finish(0) == 0
    expect(objects).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    summary = objects.locator("summary")
    expect(summary).to_have_text("Artifacts and checkpoints (2)")
    summary.click()

    items = objects.locator("li.object")
    expect(items).to_have_count(2)

    def item(name):
        """The list item whose link is named `name`, and the link."""
        found = items.filter(has=page.get_by_role("link", name=name, exact=True))
        return found, found.locator("a")

    report_item, report = item("report.bin")
    expect(report_item.locator(".size")).to_have_text("146.5 KiB")
    named_item, named = item("<b>x</b>.txt")
    expect(named).to_have_text("<b>x</b>.txt")
    expect(named_item.locator(".size")).to_have_text(f"{markup.stat().st_size} bytes")
    assert objects.locator("b, i").count() == 0
    shot(page, "run-artifacts")

    assert download_bytes(page, report) == ("report.bin", binary.read_bytes())
    # The browser may change `>` in the file name; the bytes are what count.
    assert download_bytes(page, named)[1] == markup.read_bytes()


def test_a_server_restart_while_following_leaves_no_gap_and_no_duplicate(server, page):
    """Lines before, during and after a restart of the server each show
    exactly once, in order."""
    allow_errors(page, "ERR_CONNECTION_REFUSED", "ERR_EMPTY_RESPONSE", "ERR_INCOMPLETE_CHUNKED",
                 "net::", "follow")
    live = LiveExec(server, "t1", "restart")
    for i in range(5):
        live.line(f"line {i}")
    page.goto(run_url(server, "t1", "restart"))
    expect(line_row(page, "line 4")).to_be_visible()
    server.restart()
    for i in range(5, 10):
        live.line(f"line {i}")
    expect(line_row(page, "line 9")).to_be_visible(timeout=20_000)
    live.line("line 10")
    expect(line_row(page, "line 10")).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    texts = [t for t in shown_texts(page) if t.startswith("line ")]
    assert texts == [f"line {i}" for i in range(11)]
    live.finish(0)


def test_with_tokens_only_the_login_form_shows_until_signed_in(tmp_path, page):
    """Without a session the page shows only the login form; a wrong token
    is refused with a message; the reader token opens the list and a run."""
    tokens = [
        {"name": "reader", "secret": "reader-secret-0123456789", "scopes": ["read"]},
        {"name": "worker", "secret": "worker-secret-0123456789", "scopes": ["read", "write"]},
    ]
    server = token_server(tmp_path, tokens=tokens)
    exec_sh_token = ["exec", "--task", "t1", "--run", "r1", "--no-pty", "--", "echo", "secret line"]
    cli(server, *exec_sh_token, token=server.tokens["worker"])
    page.goto(server.url + "/")
    expect(page.locator("form#login")).to_be_visible()
    expect(page.locator("#token")).to_have_attribute("type", "password")
    expect(page.locator("#runs")).to_have_count(0)
    assert page.locator("#app > *").count() == 1
    allow_errors(page, "401", "Unauthorized")
    page.fill("#token", "not-a-token-at-all")
    page.locator("form#login button[type=submit]").click()
    expect(page.locator("#login-error")).not_to_be_empty()
    page.fill("#token", server.tokens["reader"])
    page.locator("form#login button[type=submit]").click()
    expect(page.locator("#runs tr.run[data-task=t1]")).to_be_visible()
    assert "reader-secret" not in page.url
    page.locator("#runs a.run-link").first.click()
    expect(line_row(page, "secret line")).to_be_visible()
    stored = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    assert server.tokens["reader"] not in stored
    # The cookie is out of the scripts' reach, and signing out ends it.
    assert "baa_session" not in page.evaluate("document.cookie")
    expect(page.locator("#session")).to_contain_text("signed in as reader")
    page.locator("#session button").click()
    expect(page.locator("form#login")).to_be_visible()
    page.reload()
    expect(page.locator("form#login")).to_be_visible()
    expect(page.locator("#runs")).to_have_count(0)


def test_run_list_groups_attempts_filters_and_follows_status(server, page):
    """The list shows runs newest first with earlier attempts nested under
    the latest, filters by task and status, and a running run turns
    completed without a reload."""
    cli(server, "exec", "--task", "build", "--run", "b1", "--step", "compile", "--no-pty", "--", "sh", "-c", "exit 1",
        check=False)
    cli(server, "exec", "--retry-of", "build/b1", "--no-pty", "--", "true")
    exec_sh(server, "lint", "l1", "echo ok")
    live = LiveExec(server, "deploy", "d1")
    live.line("deploying")
    page.goto(server.url + "/")
    rows = page.locator("#runs tr.run")
    expect(rows).to_have_count(4)
    deploy = page.locator("#runs tr.run[data-task=deploy] .status")
    expect(deploy).to_have_attribute("data-status", "running")
    build_rows = page.locator("#runs tr.run[data-task=build]")
    expect(build_rows.nth(0)).to_have_class(re.compile("attempt-latest"))
    expect(build_rows.nth(1)).to_have_class(re.compile("attempt-earlier"))
    expect(build_rows.nth(1).locator(".status")).to_have_attribute("data-status", "failed")
    shot(page, "run-list")
    live.finish(0)
    expect(deploy).to_have_attribute("data-status", "completed", timeout=LIVE_TIMEOUT_MS)
    page.fill("#filter-task", "lin")
    expect(rows).to_have_count(1)
    page.fill("#filter-task", "")
    page.select_option("#filter-status", "failed")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-task", "build")
    page.select_option("#filter-status", "")
    expect(rows).to_have_count(4)
    page.locator("body").click()
    page.keyboard.press("j")
    expect(page.locator("#runs tr.run.selected")).to_have_count(1)
    first = page.locator("#runs tr.run.selected").get_attribute("data-run")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/runs/[^/]+/{re.escape(first)}$"))
    expect(page.locator("#status")).to_be_visible()


def test_screenshot_of_a_run_page_with_colours_and_groups(server, page):
    """A run with colours, groups and a failure, for the record."""
    exec_sh(
        server, "demo", "colours",
        r"printf '\033[1mbaa-logging demo\033[0m\n::group::Install\nfetching \033[36mcrate\033[0m 1/3\n"
        r"::endgroup::\n+++ Tests\n\033[32mok\033[0m   parse\n\033[31mFAILED\033[0m render\n"
        r"\033[38;5;208mwarning:\033[0m slow test\n\033[7m inverse \033[0m \033[4munderline\033[0m\n'; "
        r"echo 'error: 1 test failed' >&2; exit 1",
        check=False,
    )
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(run_url(server, "demo", "colours"))
    expect(page.locator("#status")).to_have_attribute("data-status", "failed")
    expect(line_row(page, "error: 1 test failed")).to_be_visible()
    shot(page, "run-page")


def test_terminal_rendering_and_line_assembly_of_the_modules(server, page):
    """The page's own modules, on edge cases that are quicker to state
    here than to produce with a command: repaints, erases, escape
    sequences that must vanish, SGR resets, and lines across chunks."""
    page.goto(server.url + "/")
    result = page.evaluate(
        """async () => {
            const { renderLine, segments, styleToCss } = await import("/assets/ansi.js");
            const { LineAssembler } = await import("/assets/lines.js");
            const shown = (raw) => renderLine(raw).plain;
            const css = (raw) => segments(renderLine(raw)).map(
                (s) => [s.text, styleToCss(s.style).classes.join(" ")]);
            const a = new LineAssembler(true);
            const chunk = (seq, channel, text) => a.add({ seq, channel, text, createdAt: "" });
            chunk(1, "stdout", "a\\nb");
            chunk(2, "stderr", "e\\n");
            chunk(3, "stdout", "c\\nd\\n\\n");
            a.add({ seq: 4, channel: "worker", renderedLine: "[worker] done", level: "info" });
            return {
                repaint: shown("50%\\r100%"),
                partial: shown("abcdef\\rXY"),
                crlf: shown("done\\r"),
                erase: shown("abcdef\\r\\x1b[2Kxy"),
                eraseEnd: shown("abcdef\\rab\\x1b[K"),
                backspace: shown("ab\\bc"),
                osc: shown("\\x1b]0;title\\x07x\\x1b]8;;http://e\\x1b\\\\link\\x1b]8;;\\x1b\\\\"),
                private: shown("\\x1b[?25lhidden cursor\\x1b[?25h"),
                cursor: shown("\\x1b[2Ax\\x1b[1;1Hy"),
                resets: css("\\x1b[1;2;3;4;7;9;31;42ma\\x1b[22;23;24;27;29;39;49mb"),
                bright: css("\\x1b[91mx\\x1b[0m\\x1b[105my"),
                lines: a.lines.map((l) => [l.id, l.channel, l.text]),
            };
        }"""
    )
    assert result["repaint"] == "100%"
    assert result["partial"] == "XYcdef"
    assert result["crlf"] == "done"
    assert result["erase"] == "xy"
    assert result["eraseEnd"] == "ab"
    assert result["backspace"] == "ac"
    assert result["osc"] == "xlink"
    assert result["private"] == "hidden cursor"
    assert result["cursor"] == "xy"
    assert result["resets"] == [["a", "fg-2 bg-1 bold dim italic underline strike"], ["b", ""]]
    assert result["bright"] == [["x", "fg-9"], ["y", "bg-13"]]
    assert result["lines"] == [
        ["1", "stdout", "a"],
        ["1.1", "stdout", "bc"],
        ["2", "stderr", "e"],
        ["3", "stdout", "d"],
        ["3.1", "stdout", ""],
        ["4", "worker", "[worker] done"],
    ]


def full_lines(all_entries):
    """Every stdout/stderr line of a run as `(id, seq, idx, text)`, in the
    order of their start, each line's text assembled across chunks."""
    lines = []
    open_ = {}
    counts = {}
    for entry in all_entries:
        channel = entry["channel"]
        if channel not in ("stdout", "stderr"):
            continue
        text = entry["text"]
        pos = 0
        if channel in open_:
            nl = text.find("\n")
            lines[open_[channel]][3] += text if nl < 0 else text[:nl]
            if nl < 0:
                continue
            del open_[channel]
            pos = nl + 1
        while pos < len(text):
            nl = text.find("\n", pos)
            end = len(text) if nl < 0 else nl
            idx = counts.get(entry["seq"], 0)
            counts[entry["seq"]] = idx + 1
            lines.append([str(entry["seq"]) if idx == 0 else f"{entry['seq']}.{idx}", entry["seq"], idx, text[pos:end]])
            if nl < 0:
                open_[channel] = len(lines) - 1
                break
            pos = nl + 1
    return [tuple(line) for line in lines]


def window_range(page):
    """The first and last seq of the window, from `#window-info`."""
    m = re.match(r"entries ([\d,]+)–([\d,]+) of ([\d,]+)", page.locator("#window-info").text_content())
    assert m, page.locator("#window-info").text_content()
    return tuple(int(g.replace(",", "")) for g in m.groups())


def shown_rows(page):
    """`(id, text)` of every line row in the DOM, in order."""
    return page.locator("#log div.line").evaluate_all(
        "rows => rows.map((r) => [r.dataset.line, r.querySelector('span.text').textContent])"
    )


# 12,000 entries: stdout chunks end their line, stderr chunks end in the
# middle of one that the next stderr chunk ends.
SPLIT_LINES = DRAINED + (
    "for i in range(1, 6001):\n"
    "    os.write(1, f'out {i}\\n'.encode())\n"
    "    os.write(2, f'{i - 1}\\nerr {i} part-'.encode())\n"
    "    drained(1)\n"
    "    drained(2)\n"
    "os.write(2, b'end\\n')\n"
)


def test_a_window_after_the_first_entry_shows_its_first_lines_with_their_ids(server, page):
    """A window that starts mid-run leaves out only a fragment that
    continues an earlier line (the server's `continues`): a chunk after a
    finished line starts a line that shows, and every line has the id it
    has in the whole run."""
    cli(server, "exec", "--task", "t1", "--run", "split", "--no-pty", "--", "python3", "-c", SPLIT_LINES)
    truth = full_lines(entries(page, server, "t1", "split"))
    # Earlier pages never come: the window stays where the tail put it.
    held = []
    page.route(re.compile(r"/entries\?.*to_seq="), lambda route: held.append(route))
    page.goto(run_url(server, "t1", "split"))
    expect(line_row(page, "err 5999 part-5999")).to_be_visible()
    lo, _hi, _total = window_range(page)
    assert lo > 1
    page.evaluate("document.getElementById('log').scrollTop = 0")
    page.wait_for_timeout(200)
    rows = [tuple(row) for row in shown_rows(page)]
    expected = [(line[0], line[3]) for line in truth if line[1] >= lo][: len(rows)]
    assert len(rows) > 10
    # The window's first rows are the first lines starting in it, with
    # their ids in the whole run; nothing hidden, nothing shifted.
    assert rows == expected, (rows[:4], expected[:4])
    assert held, "the page asked for the entries before its window"


def big_lines_script(count, width):
    """A command writing `count` lines `line NNNNN xxx…` of `width` characters."""
    return (
        "import os, time\n"
        f"for i in range({count}):\n"
        f"    os.write(1, (f'line {{i:05d}} ' + 'x' * {width}).encode() + b'\\n')\n"
        "    time.sleep(0.002)\n"
    )


def test_pages_cut_by_the_byte_bound_leave_no_hole(server, page):
    """Entries of 60 KB: a page of the tail holds fewer than asked for. The
    page opens at the end, loads earlier pages with no hole (every line of
    the run is in the list, once), and a `#L` link far from the start
    loads a window that holds its line."""
    cli(server, "exec", "--task", "t1", "--run", "wide", "--no-pty", "--", "python3", "-c",
        big_lines_script(80, 60_000))
    all_entries = entries(page, server, "t1", "wide")
    truth = full_lines(all_entries)
    workers = sum(1 for e in all_entries if e["channel"] == "worker")
    page.goto(run_url(server, "t1", "wide"))
    expect(page.locator("#log div.line span.text", has_text="line 00079 ")).to_be_in_viewport()
    expect(page.locator("#window-info")).to_have_text(re.compile(r"^entries 1–([\d,]+) of \1$"), timeout=20_000)
    row_h = page.evaluate("document.querySelector('#log .line').getBoundingClientRect().height")
    height = page.evaluate("document.querySelector('#log .log-spacer').getBoundingClientRect().height")
    assert round(height / row_h) == len(truth) + workers
    target = next(line for line in truth if line[3].startswith("line 00070 "))
    page.goto(run_url(server, "t1", "wide", f"#L{target[0]}"))
    page.reload()
    row = page.locator(f'#log div.line[data-line="{target[0]}"]')
    expect(row).to_have_class(re.compile(r"\bhighlight\b"))
    expect(row.locator("span.text")).to_contain_text("line 00070 ")


def test_a_progress_bar_longer_than_the_cap_shows_its_final_state(server, page):
    """A line redrawn with `\\r` over more than 20,000 raw characters shows
    what a terminal shows at its end."""
    cli(server, "exec", "--task", "t1", "--run", "bar", "--no-pty", "--", "python3", "-c",
        "import sys\nsys.stdout.write(''.join(f'progress {i:5d}\\r' for i in range(3000)) + 'progress  done\\n')")
    page.goto(run_url(server, "t1", "bar"))
    expect(line_row(page, "progress  done")).to_be_visible()
    assert page.locator("#log span.cut").count() == 0


def test_sgr_colours_carry_over_to_the_next_lines_of_the_channel(server, page):
    """As in a terminal, a colour set on one line stays on for the next
    lines of the same channel until a reset."""
    exec_sh(server, "t1", "carry", r"printf '\033[31mred start\nstill red\n\033[0mplain\n'; echo other >&2")
    page.goto(run_url(server, "t1", "carry"))
    expect(page.locator("#log span.fg-1", has_text="still red")).to_be_visible()
    expect(line_row(page, "plain").locator("span.fg-1")).to_have_count(0)
    expect(line_row(page, "other").locator("span.fg-1")).to_have_count(0)


def test_hostile_escapes_cost_little_and_show_nothing_raw(server, page):
    """Huge cursor moves neither hang nor crash the page, a cursor move
    with two parameters does not break the line, 8-bit C1 strings and
    controls vanish, and a marker is looked for in a line's start only."""
    page.goto(server.url + "/")
    result = page.evaluate(
        """async () => {
            const { renderLine, MAX_COL } = await import("/assets/ansi.js");
            const { markerOf } = await import("/assets/groups.js");
            const t0 = performance.now();
            const far = renderLine("a\\x1b[10000000Cb\\x1b[1000000000Cc").plain.length;
            const huge = "::group::x" + "\\x1b[1m".repeat(200000);
            const marker = markerOf(huge).kind;
            return {
                ms: performance.now() - t0, far, max: MAX_COL,
                twoParams: renderLine("abc\\x1b[1;5Gx").plain,
                c1: renderLine("x\\x9d0;title\\x9cy\\x85z\\x9d8;;u\\x07w\\x90dcs\\x9cv").plain,
                marker,
            };
        }"""
    )
    assert result["ms"] < 2000, result
    assert result["far"] <= result["max"] + 2
    assert result["twoParams"] == "xbc"
    assert result["c1"] == "xyzwv"
    assert result["marker"] == "start"


def test_the_window_stays_within_its_character_and_line_bounds(server, page):
    """A window of large entries trims down to its character bound (no
    floor of 5,000 entries), one of many short lines to its line bound,
    and what was dropped tells whether the new first chunk continues a
    line."""
    page.goto(server.url + "/")
    result = page.evaluate(
        """async () => {
            const { EntryWindow, MAX_CHARS, MAX_LINES } = await import("/assets/log_window.js");
            const win = new EntryWindow("t", "r");
            const big = "y".repeat(200_000);
            const entries = [];
            for (let seq = 1; seq <= 100; seq++) {
                entries.push({ seq, channel: seq % 2 ? "stdout" : "stderr", text: seq === 3 ? "cut" : big + "\\n" });
            }
            win.push(entries);
            const over = win.overfull();
            win.trim("top");
            const chars = win.chars;
            const lines = new EntryWindow("t", "r");
            const nl = "\\n".repeat(100_000);
            const many = [];
            for (let seq = 1; seq <= 14; seq++) many.push({ seq, channel: "stdout", text: nl });
            lines.push(many);
            const linesOver = lines.overfull();
            lines.trim("bottom");
            return {
                over, chars, max: MAX_CHARS, after: win.overfull(), held: win.entries.length,
                continues: win.continues, lo: win.lo,
                linesOver, lineCount: lines.lineCount, maxLines: MAX_LINES, linesAfter: lines.overfull(),
            };
        }"""
    )
    assert result["over"] and not result["after"]
    assert result["chars"] <= result["max"]
    assert 0 < result["held"] < 50
    assert result["linesOver"] and not result["linesAfter"]
    assert result["lineCount"] <= result["maxLines"]
    # Entry 3 (stdout, "cut") had no newline, but later stdout chunks did.
    assert result["continues"] == {"stdout": False, "stderr": False}, result


def test_an_expired_session_while_following_shows_the_sign_in_form(tmp_path, page):
    """A page following a live run whose session ends (the cookie gone,
    the stream reconnecting) shows the sign-in form, not endless retries."""
    allow_errors(page, "401", "Unauthorized", "net::", "ERR_", "follow")
    server = token_server(tmp_path, tokens=[
        {"name": "reader", "secret": "reader-secret-0123456789", "scopes": ["read"]},
        {"name": "worker", "secret": "worker-secret-0123456789", "scopes": ["read", "write"]},
    ])
    live = LiveExec(server, "t1", "live", token=server.tokens["worker"])
    live.line("first")
    page.goto(server.url + "/runs/t1/live")
    page.fill("#token", server.tokens["reader"])
    page.locator("form#login button[type=submit]").click()
    expect(line_row(page, "first")).to_be_visible()
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page.context.clear_cookies()
    server.restart()
    expect(page.locator("form#login")).to_be_visible(timeout=15_000)
    live.finish(0)


def test_shortcuts_leave_keys_to_a_focused_slider_and_the_log_shows_its_focus(server, page):
    """With the position slider focused, its keys stay its own (the page
    does not handle them) while letters still reach the page; a keyboard
    focus on the log shows a ring."""
    exec_sh(server, "t1", "keys", "seq 1 50")
    page.goto(run_url(server, "t1", "keys"))
    expect(line_row(page, "50")).to_be_visible()
    page.locator("#position").focus()
    handled = page.evaluate(
        """() => {
            const slider = document.getElementById("position");
            const keys = ["Home", "End", "ArrowLeft", "PageUp"];
            return keys.map((key) => {
                const event = new KeyboardEvent("keydown", {key, bubbles: true, cancelable: true});
                slider.dispatchEvent(event);
                return event.defaultPrevented;
            });
        }"""
    )
    assert handled == [False, False, False, False], handled
    page.keyboard.press("t")
    expect(page.locator("#timestamps")).to_be_checked()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "log"
    assert page.evaluate("getComputedStyle(document.getElementById('log')).outlineStyle") != "none"
    page.keyboard.press("t")
    expect(page.locator("#timestamps")).not_to_be_checked()


def test_live_appends_extend_the_visible_lines_without_going_over_the_window(server, page):
    """On a window of 500,000 lines, a live line that holds no group marker
    only extends the visible lines (a marker asks for a rebuild), so
    following costs what arrives, not the size of the window."""
    page.goto(server.url + "/")
    result = page.evaluate(
        """async () => {
            const { LineAssembler } = await import("/assets/lines.js");
            const { FoldState, VisibleList } = await import("/assets/groups.js");
            const a = new LineAssembler(true);
            const rows = [];
            for (let i = 0; i < 500000; i++) rows.push(`row ${i}\\n`);
            a.add({ seq: 1, channel: "stdout", text: rows.join("") });
            const channels = new Set(["stdout", "stderr", "worker"]);
            const list = new VisibleList();
            const shown = list.build(a.lines, channels, new FoldState(), true).length;
            const t0 = performance.now();
            let added = 0;
            for (let seq = 2; seq < 102; seq++) {
                const changed = a.add({ seq, channel: "stdout", text: `live ${seq}\\n` });
                added += list.append(a.lines, changed, channels, true).length;
            }
            const ms = performance.now() - t0;
            const marker = list.append(
                a.lines, a.add({ seq: 102, channel: "stdout", text: "::group::x\\n" }), channels, true);
            return { shown, added, ms, marker };
        }"""
    )
    assert result["shown"] == 500_000
    assert result["added"] == 100
    assert result["ms"] < 250, result
    assert result["marker"] is None
