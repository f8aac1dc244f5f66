"""A `kubectl` stand-in for client pods of the pod runner, so that the commands NOTES.txt
prints run as a user would type them.

It knows the two commands NOTES uses, with the objects of the release given as JSON in
``$KUBECTL_OBJECTS`` (a file: ``{"secret/<name>": {...data}, "configmap/<name>": {...}}``):

- ``kubectl -n NS get secret|configmap NAME -o jsonpath='{.data.KEY}'`` prints the value as
  the API server holds it (base64 for a Secret, plain for a ConfigMap);
- ``kubectl -n NS port-forward svc/NAME LOCAL:REMOTE`` listens on 127.0.0.1:LOCAL and
  forwards each connection to the Service (its DNS name, as the runner's /etc/hosts maps it).

Anything else exits 2 naming what is not supported, so a NOTES change that needs more is
noticed rather than skipped. This file is copied into a ConfigMap and run by ``python3``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sys
import threading


def _get(args: list[str]) -> int:
    kind, name = args[0].lower(), args[1]
    out = args[args.index("-o") + 1] if "-o" in args else ""
    match = re.fullmatch(r"jsonpath=\{\.data\.((?:[A-Za-z0-9_-]|\\\.)+)\}", out)
    if kind not in ("secret", "configmap") or not match:
        print(f"kubectl stand-in: unsupported get {args}", file=sys.stderr)
        return 2
    with open(os.environ["KUBECTL_OBJECTS"]) as f:
        objects = json.load(f)
    data = objects.get(f"{kind}/{name}")
    if data is None:
        print(f'Error from server (NotFound): {kind}s "{name}" not found', file=sys.stderr)
        return 1
    sys.stdout.write(data.get(match.group(1).replace("\\.", "."), ""))
    return 0


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _port_forward(args: list[str]) -> int:
    target, ports = args[0], args[1]
    if not target.startswith(("svc/", "service/")):
        print(f"kubectl stand-in: unsupported port-forward target {target}", file=sys.stderr)
        return 2
    service = target.split("/", 1)[1]
    local, _, remote = ports.partition(":")
    listener = socket.create_server(("127.0.0.1", int(local)))
    print(f"Forwarding from 127.0.0.1:{local} -> {remote}", flush=True)
    while True:
        conn, _ = listener.accept()
        upstream = socket.create_connection((service, int(remote or local)))
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def main(argv: list[str]) -> int:
    args = list(argv)
    if "-n" in args:  # the namespace: the runner has one
        i = args.index("-n")
        del args[i : i + 2]
    if args and args[0] == "get":
        return _get(args[1:])
    if args and args[0] == "port-forward":
        return _port_forward(args[1:])
    print(f"kubectl stand-in: unsupported command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
