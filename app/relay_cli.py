"""`ppxgb relay`: the service every role dials out to, for sites that open no inbound port.

    ppxgb certs --out pki/ --roles relay coordinator party-0 party-1 server-0 server-1
    ppxgb relay --host 0.0.0.0 --port 7443 --cert pki/relay.pem --key pki/relay.key --ca pki/ca.pem

Each role then runs with `--relay relay.example.org:7443` (or a "relay" entry in
PEERS.json) and needs no listening port.  The relay forwards sealed frames between the
roles of each session and sees only their sizes and timing (see ppxgb.relay).  It runs
until interrupted; one relay serves any number of sessions.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import threading

from ppxgb.errors import ParameterError
from ppxgb.net import parse_address
from ppxgb.tls import TLSConfig

DEFAULT_PORT = 7443


def register(subparsers) -> None:
    p = subparsers.add_parser("relay", help="run the relay that roles dial out to (no inbound ports at the sites)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    p.add_argument("--cert", help="the relay's certificate (PEM); it must name 'relay'")
    p.add_argument("--key", help="the relay's private key (PEM, mode 0600)")
    p.add_argument("--ca", help="the CA that signs every role's certificate (PEM)")
    p.add_argument("--stall-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="a role that stops reading this long is reported to its session as stalled")
    p.add_argument("--quiet", action="store_true", help="print only warnings and errors (no line per role "
                   "joining or leaving a session)")
    p.add_argument("--insecure", action="store_true",
                   help="DEBUGGING ONLY: no TLS to the relay and no end-to-end encryption between roles")
    p.set_defaults(func=cmd_relay)


def cmd_relay(args: argparse.Namespace) -> int:
    from ppxgb.relay import Relay

    if not 0 <= args.port < 65536:
        raise ParameterError.bad("--port", "a port number (0 picks a free one)", args.port)
    tls = None
    if args.insecure and (args.cert or args.key or args.ca):
        raise ParameterError("relay: --insecure with --cert/--key/--ca: choose one (the files would be ignored)")
    if args.insecure:
        print("ppxgb relay: WARNING: running WITHOUT TLS (--insecure): roles must run --insecure too, "
              "and their traffic is plaintext", file=sys.stderr)
    else:
        if not (args.cert and args.key and args.ca):
            missing = [f"--{n}" for n in ("cert", "key", "ca") if not getattr(args, n)]
            raise ParameterError(f"relay: give {', '.join(missing)} (plaintext only with an explicit --insecure)")
        tls = TLSConfig(args.cert, args.key, args.ca)
        tls.check()
    lock = threading.Lock()

    def log(line: str) -> None:          # whole lines: roles join and leave from many threads
        with lock:
            sys.stderr.write(f"ppxgb relay: {line}\n")
            sys.stderr.flush()

    relay = Relay(args.host, args.port, tls, insecure=args.insecure, stall_timeout=args.stall_timeout,
                  log=None if args.quiet else log)
    if not args.quiet:
        print(f"ppxgb relay: listening on {args.host}:{relay.port} ({'mutual TLS' if tls else 'PLAINTEXT'})",
              file=sys.stderr, flush=True)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    relay.stop(grace=1.0)
    if not args.quiet:
        print("ppxgb relay: stopped", file=sys.stderr, flush=True)
    return 0


# ------------------------------------------------------------- for the launchers

def add_relay_role_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--relay", metavar="HOST:PORT",
                   help="reach every peer through this relay (overrides PEERS.json); no listening port")
    p.add_argument("--session", help="the run's name at the relay (overrides PEERS.json); every role of a run "
                   "gives the same one")


def add_relay_federation_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--relay", nargs="?", const="start", metavar="HOST:PORT",
                   help="route every role through a relay instead of a full mesh: alone, start one on --host; "
                   "with HOST:PORT, use that running relay (its certificate from --certs)")


def relay_plan(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(relay address or "start", session name) of a federation run; (None, None) without --relay."""
    relay = getattr(args, "relay", None)
    if relay is None:
        return None, None
    if relay != "start":
        parse_address(relay)
        if not args.certs and not args.insecure:
            raise ParameterError("--relay HOST:PORT: a running relay needs the federation's certificates "
                                 "(--certs DIR, with the CA that signed the relay's), or --insecure")
    return relay, f"run-{secrets.token_hex(8)}"


def relay_command(base: list[str], host: str, port: int, tls: TLSConfig | None) -> list[str]:
    """The command line that starts a local relay for a federation."""
    argv = base + ["relay", "--host", host, "--port", str(port), "--quiet"]
    if tls is None:
        return argv + ["--insecure"]
    return argv + ["--cert", tls.cert, "--key", tls.key, "--ca", tls.ca]
