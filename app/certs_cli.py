"""`ppxgb certs`: a CA and one certificate per role, for a deployment over mutual TLS.

    ppxgb certs --out pki/ --roles coordinator party-0 party-1 server-0 server-1

writes ca.pem and ca.key (the CA) and <role>.pem / <role>.key per role into the folder;
keys are created with mode 0600.  Copy to each site only its own <role>.pem, <role>.key
and ca.pem; keep ca.key offline.  The certificates are issued by ppxgb.tls (EC P-256,
each role's name as its DNS name, plus localhost and 127.0.0.1).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ppxgb.errors import ParameterError
from ppxgb.tls import make_test_pki

DEFAULT_DAYS = 365


def register(subparsers) -> None:
    p = subparsers.add_parser("certs", help="write a CA and one TLS certificate per role into a folder",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, metavar="DIR", help="folder for ca.pem, ca.key, <role>.pem, <role>.key")
    p.add_argument("--roles", nargs="+", metavar="ROLE",
                   help="role names as in PEERS.json; default: coordinator, party-0..N-1, server-0..S-1")
    p.add_argument("--parties", type=int, default=3, help="number of parties (without --roles)")
    p.add_argument("--servers", type=int, default=2, help="number of compute servers (without --roles)")
    p.add_argument("--days", type=int, default=DEFAULT_DAYS, help="validity of every certificate")
    p.add_argument("--overwrite", action="store_true", help="replace certificates already in --out")
    p.set_defaults(func=cmd_certs)


def cmd_certs(args: argparse.Namespace) -> int:
    roles = args.roles or (["coordinator"] + [f"party-{i}" for i in range(args.parties)]
                           + [f"server-{i}" for i in range(args.servers)])
    if len(set(roles)) != len(roles):
        raise ParameterError.bad("--roles", "distinct names", roles)
    if args.days < 1:
        raise ParameterError.bad("--days", "an int >= 1", args.days)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ParameterError.bad("--out", "a folder", str(out))
    existing = [n for n in ["ca", *roles] if (out / f"{n}.pem").exists() or (out / f"{n}.key").exists()]
    if existing and not args.overwrite:
        raise ParameterError.bad("--out", "a folder without these certificates (or --overwrite)",
                                 f"{out}: {', '.join(existing)} exist")
    make_test_pki(out, roles, days=args.days)
    print(f"ppxgb certs: CA and {len(roles)} certificates ({', '.join(roles)}) written to {out}; "
          "give each site its <role>.pem, <role>.key and ca.pem, keep ca.key offline")
    return 0
