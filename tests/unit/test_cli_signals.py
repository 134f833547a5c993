"""Which signals end `confab serve` (so that its exit handlers stop the embedded PostgreSQL)."""

from __future__ import annotations

import argparse
import signal

import pytest

from shared import cli

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")


class _Stop(Exception):
    pass


@pytest.fixture
def serve_until_settings(monkeypatch):
    """Run `confab serve` up to the point where it has set its signal handlers, then stop it."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def stop():
        raise _Stop

    monkeypatch.setattr(cli, "get_settings", stop)

    def serve():
        with pytest.raises(_Stop):
            cli.cmd_serve(argparse.Namespace(host="127.0.0.1", port=0))

    yield serve
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_serve_ends_on_a_hangup_when_run_from_a_terminal(serve_until_settings):
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    serve_until_settings()
    assert signal.getsignal(signal.SIGHUP) is cli._exit_once
    assert signal.getsignal(signal.SIGTERM) is cli._exit_once


def test_serve_keeps_ignoring_a_hangup_when_started_under_nohup(serve_until_settings):
    # `nohup confab serve &` asks for the server to outlive the terminal: nohup sets SIGHUP to ignored, and
    # serve must not undo that.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    serve_until_settings()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is cli._exit_once


def test_ctrl_c_before_the_server_is_up_is_one_line_and_exit_130(monkeypatch, capsys):
    # Ctrl-C while the embedded PostgreSQL started or migrations ran printed a KeyboardInterrupt stack trace.
    def interrupted(settings):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "resolve_database_url", interrupted)
    assert cli.main(["db", "migrate"]) == 130
    assert capsys.readouterr().err == "confab: interrupted\n"
