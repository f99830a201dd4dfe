#!/usr/bin/env python3
"""Open N idle HTTP/1.1 keep-alive connections to 127.0.0.1:PORT and hold them.

Used by bench.py to measure a proxy's memory per idle client connection:

    idle_conns.py PORT COUNT [--host 127.0.0.1] [--timeout 120] [--hold 120]

Each connection sends one `GET / HTTP/1.1` (Host: bench.local) and reads the whole
response, so the proxy has fully set the connection up (and, for a proxy, gone to
the backend once) before it sits idle.  Connections are opened in batches so the
listen backlog never overflows.

Protocol on stdout/stdin (line based):
  * prints  `READY wanted=<n> ok=<m> failed=<k> secs=<t>`  once every connection is
    set up (or the --timeout deadline is hit);
  * then waits for a line on stdin (at most --hold seconds), counts the connections
    the server has not closed, prints `ALIVE <n>`, closes everything and exits.

Only loopback addresses are accepted.  Every loop is bounded by a deadline.
Stdlib only.
"""
import argparse
import errno
import resource
import selectors
import socket
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n"


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def response_complete(buf):
    """True once `buf` holds one whole HTTP/1.1 response (Content-Length or chunked)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = buf[:end].decode("latin-1").lower()
    body = buf[end + 4:]
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        name = name.strip()
        if name == "content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return True
        if name == "transfer-encoding" and "chunked" in value:
            return body.endswith(b"0\r\n\r\n")
    return True  # no body framing (e.g. 204/304): headers are the whole response


def open_batch(host, port, n, deadline):
    """Open n connections concurrently; return (ok_sockets, failed_count)."""
    sel = selectors.DefaultSelector()
    pending = {}
    failed = 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((host, port))
        if rc not in (0, errno.EINPROGRESS):
            s.close()
            failed += 1
            continue
        pending[s] = {"state": "connect", "buf": b""}
        sel.register(s, selectors.EVENT_WRITE)
    ok = []
    while pending and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
            s = key.fileobj
            st = pending[s]
            try:
                if st["state"] == "connect":
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise OSError(err, "connect failed")
                    s.send(REQUEST)  # 36 bytes: always fits the empty send buffer
                    st["state"] = "read"
                    sel.modify(s, selectors.EVENT_READ)
                else:
                    data = s.recv(65536)
                    if not data:
                        raise OSError("closed by server")
                    st["buf"] += data
                    if response_complete(st["buf"]):
                        sel.unregister(s)
                        del pending[s]
                        ok.append(s)
            except OSError:
                sel.unregister(s)
                del pending[s]
                s.close()
                failed += 1
    for s in pending:  # deadline hit
        sel.unregister(s)
        s.close()
        failed += 1
    sel.close()
    return ok, failed


def count_alive(socks):
    alive = 0
    for s in socks:
        try:
            data = s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            if data:  # unexpected bytes, but the connection is still open
                alive += 1
        except (BlockingIOError, InterruptedError):
            alive += 1  # nothing to read and no EOF: idle and open
        except OSError:
            pass
    return alive


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=120.0, help="deadline for opening all connections (s)")
    ap.add_argument("--hold", type=float, default=120.0, help="max time to hold them waiting for stdin (s)")
    args = ap.parse_args()
    if not args.host.startswith("127."):
        sys.exit("idle_conns.py: only loopback (127.x) targets are allowed")

    limit = raise_nofile(65536)
    if limit < args.count + 64:
        sys.exit(f"idle_conns.py: RLIMIT_NOFILE is {limit}, need {args.count + 64}; raise `ulimit -n`")

    t0 = time.monotonic()
    deadline = t0 + args.timeout
    socks, failed = [], 0
    while len(socks) + failed < args.count and time.monotonic() < deadline:
        n = min(args.batch, args.count - len(socks) - failed)
        ok, bad = open_batch(args.host, args.port, n, deadline)
        socks += ok
        failed += bad
    failed = args.count - len(socks)
    print(f"READY wanted={args.count} ok={len(socks)} failed={failed} secs={time.monotonic() - t0:.2f}", flush=True)

    sel = selectors.DefaultSelector()
    sel.register(sys.stdin, selectors.EVENT_READ)
    sel.select(timeout=args.hold)  # a line on stdin, EOF, or the hold deadline
    sel.close()
    print(f"ALIVE {count_alive(socks)}", flush=True)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
