"""`mgmt console`: print the operations console's URL, and open it where a browser can show it."""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import urllib.error
import urllib.request
import webbrowser

from control_plane.settings import DEFAULT_HTTP_LISTEN

_DEFAULT_HTTP_PORT = DEFAULT_HTTP_LISTEN.rpartition(":")[2]


def add_parser(verbs: argparse._SubParsersAction[argparse.ArgumentParser], server_default: str) -> None:
    """The `console` verb and its flags."""
    console = verbs.add_parser("console", help="print the web console's URL (and open it in a browser)")
    console.add_argument(
        "--url",
        default=os.environ.get("MGMT_CONSOLE_URL"),
        help="the console's URL (MGMT_CONSOLE_URL); default: the --server host on the default HTTP port "
        f"{_DEFAULT_HTTP_PORT}",
    )
    console.add_argument(
        "--server",
        default=os.environ.get("MGMT_SERVER", server_default),
        help="HOST:PORT of the control plane (MGMT_SERVER)",
    )
    console.add_argument(
        "--tls-ca",
        default=os.environ.get("MGMT_TLS_CA"),
        help="with TLS the console is on https (MGMT_TLS_CA)",
    )
    console.add_argument("--no-open", action="store_true", help="only print the URL")


def console_url(args: argparse.Namespace) -> str:
    """The URL asked for, or the one `mgmt serve` uses by default beside the `--server` host."""
    if args.url:
        return str(args.url).rstrip("/") + "/"
    host = args.server.split(",")[0].strip().rpartition(":")[0] or "127.0.0.1"
    scheme = "https" if args.tls_ca else "http"
    return f"{scheme}://{host}:{_DEFAULT_HTTP_PORT}/"


def _answers(url: str, tls_ca: str | None) -> str | None:
    """None when the console's listener answers /healthz; otherwise why not."""
    context = ssl.create_default_context(cafile=tls_ca) if tls_ca else None
    try:
        with urllib.request.urlopen(url + "healthz", timeout=3, context=context) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))


def _can_show_a_browser() -> bool:
    """Whether a graphical browser can open here (a terminal browser would take over the terminal)."""
    if not sys.stdout.isatty():
        return False
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        webbrowser.get()
    except webbrowser.Error:
        return False
    return True


def run(args: argparse.Namespace) -> int:
    """Print the URL; open it when asked and possible. 1 when nothing answers there."""
    url = console_url(args)
    if not url.startswith(("http://", "https://")):
        print(f"mgmt: error: --url must be an http:// or https:// URL, got {url!r}", file=sys.stderr)
        return 2
    print(url, flush=True)
    problem = _answers(url, args.tls_ca)
    if problem is not None:
        print(
            f"mgmt: error: nothing answers at {url} ({problem}): is `mgmt serve` running with its HTTP "
            "listener there? set --url or MGMT_CONSOLE_URL",
            file=sys.stderr,
        )
        return 1
    if not args.no_open and _can_show_a_browser():
        webbrowser.open(url)
    return 0
