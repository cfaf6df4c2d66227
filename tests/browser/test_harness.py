"""The harness itself: a baa-logd process, the baa-log command line
against it, a live exec, and the system chromium, each doing the least
that proves it works. The page's own tests build on these."""

from conftest import (
    LiveExec,
    Server,
    allow_errors,
    cli,
    page_errors,
    shot,
    token_server,
    wait_until,
)


def test_exec_stores_a_line_that_cat_reads_back(server):
    """A run made by `baa-log exec` holds its command's line."""
    cli(server, "exec", "--task", "t1", "--run", "r1", "--no-pty", "--", "echo", "hi")
    assert cli(server, "cat", "t1/r1").stdout == "hi\n"


def test_a_live_exec_sends_each_line_when_the_test_says(server):
    """LiveExec's lines reach the server one by one while the run is
    running, and finish() ends the run with the given exit code."""
    live = LiveExec(server, "t1", "live")
    live.line("first")
    wait_until(lambda: cli(server, "cat", "t1/live").stdout == "first\n", message="the first line")
    assert "running" in cli(server, "show", "t1/live").stdout
    live.line("second", channel="stderr")
    wait_until(
        lambda: "second" in cli(server, "cat", "t1/live").stdout, message="the stderr line"
    )
    assert live.finish(exit_code=3) == 3
    assert "failed" in cli(server, "show", "t1/live").stdout


def test_restart_keeps_the_address_and_the_runs(tmp_path):
    """A restarted server listens on the same address over the same data;
    a killed one is gone until started again."""
    server = Server(tmp_path / "data").start()
    cli(server, "exec", "--task", "t1", "--run", "r1", "--no-pty", "--", "echo", "kept")
    addr = server.addr
    server.restart()
    assert server.addr == addr
    assert cli(server, "cat", "t1/r1").stdout == "kept\n"
    server.kill()
    assert cli(server, "health", check=False, timeout=30).returncode != 0
    server.restart()
    assert cli(server, "health").stdout.strip() == "SERVING"


def test_a_token_server_refuses_calls_without_a_token(tmp_path):
    """token_server() writes a token file the server loads: no token is
    refused, the reader's token reads."""
    server = token_server(tmp_path)
    assert cli(server, "runs", check=False).returncode != 0
    cli(server, "runs", token=server.tokens["reader"])


def test_chromium_evaluates_script(page):
    """The system chromium loads a page and runs script in it."""
    page.goto("data:text/html,<title>harness</title><p id=p>hello</p>")
    assert page.title() == "harness"
    assert page.evaluate("document.getElementById('p').textContent + (1 + 2)") == "hello3"
    path = shot(page, "harness")
    assert path.stat().st_size > 0


def test_console_errors_are_recorded(page):
    """Console errors and uncaught exceptions are recorded, and a test can
    allow the ones it provokes."""
    allow_errors(page, "provoked")
    page.goto("about:blank")
    page.evaluate("console.error('provoked on purpose')")
    page.evaluate("setTimeout(() => { throw new Error('provoked uncaught') }, 0)")
    wait_until(lambda: len(page_errors(page)) == 2, timeout=5, message="two errors", page=page)
    assert any(error.startswith("pageerror:") for error in page_errors(page))
