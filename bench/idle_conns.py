#!/usr/bin/env python3
"""Open N idle keep-alive connections to 127.0.0.1:PORT and hold them.

Used by bench.py to measure a proxy's memory per idle client connection:

    idle_conns.py PORT COUNT [--mode plain|tls|h2] [--host 127.0.0.1] [--timeout 120] [--hold 120]

Each connection makes one `GET /` (Host: bench.local) and reads the whole response,
so the proxy has fully set the connection up (and, for a proxy, gone to the backend
once) before it sits idle: `plain` is HTTP/1.1, `tls` is HTTP/1.1 over TLS (ALPN
http/1.1, the certificate not checked: a throwaway one on loopback), `h2` is HTTP/2
with prior knowledge (h2c: preface, SETTINGS, one HEADERS frame; the server's
SETTINGS acknowledged).  Connections are opened in batches so the listen backlog
never overflows.

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
import ssl
import struct
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: bench.local\r\n\r\n"

# HTTP/2: the client preface, an empty SETTINGS frame, and HEADERS on stream 1 (END_STREAM | END_HEADERS)
# with :method GET, :scheme http, :path / (static table) and :authority bench.local (literal).
H2_AUTHORITY = b"bench.local"
H2_BLOCK = b"\x82\x86\x84\x41" + bytes([len(H2_AUTHORITY)]) + H2_AUTHORITY
H2_REQUEST = (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
              + struct.pack(">I", len(H2_BLOCK))[1:] + b"\x01\x05\x00\x00\x00\x01" + H2_BLOCK)
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def h2_progress(buf, sock):
    """Consumes whole frames from `buf` (a bytearray); returns True once stream 1 has ended."""
    done = False
    while len(buf) >= 9:
        length = int.from_bytes(buf[0:3], "big")
        if len(buf) < 9 + length:
            break
        ftype, flags = buf[3], buf[4]
        stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        del buf[:9 + length]
        if ftype == 0x4 and not flags & 0x1:  # SETTINGS, not an ACK
            sock.send(SETTINGS_ACK)
        elif ftype == 0x7:  # GOAWAY
            raise OSError("GOAWAY from server")
        elif stream == 1 and ftype in (0x0, 0x1) and flags & 0x1:  # DATA or HEADERS with END_STREAM
            done = True
    return done


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


def tls_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def open_batch(host, port, n, deadline, mode="plain", ctx=None):
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
                    if mode == "tls":
                        sel.unregister(s)
                        del pending[s]
                        s = ctx.wrap_socket(s, do_handshake_on_connect=False)
                        pending[s] = st
                        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
                        st["state"] = "handshake"
                    else:
                        # 36 or 60-odd bytes: always fit the empty send buffer
                        s.send(H2_REQUEST if mode == "h2" else REQUEST)
                        st["state"] = "read"
                        st["buf"] = bytearray()
                        sel.modify(s, selectors.EVENT_READ)
                elif st["state"] == "handshake":
                    try:
                        s.do_handshake()
                    except ssl.SSLWantReadError:
                        sel.modify(s, selectors.EVENT_READ)
                        continue
                    except ssl.SSLWantWriteError:
                        sel.modify(s, selectors.EVENT_WRITE)
                        continue
                    s.send(REQUEST)
                    st["state"] = "read"
                    st["buf"] = bytearray()
                    sel.modify(s, selectors.EVENT_READ)
                else:
                    try:
                        data = s.recv(65536)
                    except ssl.SSLWantReadError:
                        continue
                    if not data:
                        raise OSError("closed by server")
                    st["buf"] += data
                    done = h2_progress(st["buf"], s) if mode == "h2" else response_complete(bytes(st["buf"]))
                    if done:
                        sel.unregister(s)
                        del pending[s]
                        ok.append(s)
            except (OSError, ValueError):
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
        if isinstance(s, ssl.SSLSocket):
            # A TLS socket cannot peek below TLS: read the raw socket state instead.
            try:
                s.setblocking(False)
                if s.recv(1) == b"":
                    continue
                alive += 1
            except (ssl.SSLWantReadError, BlockingIOError):
                alive += 1
            except (OSError, ssl.SSLError):
                pass
            continue
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
    ap.add_argument("--mode", choices=["plain", "tls", "h2"], default="plain")
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
        ok, bad = open_batch(args.host, args.port, n, deadline, args.mode,
                             tls_context() if args.mode == "tls" else None)
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
