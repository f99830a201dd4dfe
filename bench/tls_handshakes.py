#!/usr/bin/env python3
"""Full TLS handshakes per second: every request on a NEW TLS connection, no resumption.

    python3 bench/tls_handshakes.py PORT [--conns 32] [--procs 2] [--duration 10]
                                    [--host bench.local] [--path /] [--timeout 10]

Why not wrk or h2load: both keep the TLS session of a connection and offer it
again when they reconnect (wrk: `SSL_clear` keeps it; h2load likewise), so with
`Connection: close` they measure *resumed* handshakes (checked with nginx's
`$ssl_session_reused`). `openssl s_time -new` does full handshakes but runs one
connection at a time, sends no SNI or Host and gives no latency figures.

What this does: `--procs` processes (one CPU each at most: Python's GIL), together
keeping `--conns` connections in flight on 127.0.0.1:PORT. Each connection:
TCP connect, TLS handshake (SNI = --host, ALPN http/1.1, no certificate
verification, and no session offered: Python only resumes when given `session=`),
`GET PATH HTTP/1.1` with `Host: --host` and `Connection: close`, read the whole
response (Content-Length or chunked or until EOF), close. A connection counts
when it completed within the --duration window; latency = connect start to last
response byte, so it INCLUDES TCP connect and the handshake (unlike wrk's).

Prints one JSON object on stdout: handshakes (ok), errors (connect, handshake,
reset, timeout, status not 2xx/3xx), rps, p50_ms, p99_ms, resumed (must be 0),
tls versions seen. Exit status 0 when at least one request succeeded.
Stdlib only; every loop is bounded in time.
"""
import argparse
import errno
import json
import math
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import time


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, math.ceil(p / 100.0 * len(sorted_vals)) - 1)  # nearest rank
    return sorted_vals[k]


class Conn:
    """One request on one new TLS connection, as a non-blocking state machine."""

    def __init__(self, w):
        self.w = w
        self.t0 = time.monotonic()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = None
        self.state = "connect"
        self.buf = bytearray()
        self.out = w.request
        self.events = selectors.EVENT_WRITE
        try:
            rc = self.sock.connect_ex(("127.0.0.1", w.port))
            if rc not in (0, errno.EINPROGRESS):
                raise OSError(rc, os.strerror(rc))
            w.sel.register(self.sock, self.events, self)
        except OSError:
            self.sock.close()
            raise

    def want(self, events):
        if events != self.events:
            self.events = events
            self.w.sel.modify(self.tls or self.sock, events, self)

    def close(self):
        try:
            self.w.sel.unregister(self.tls or self.sock)
        except (KeyError, ValueError):
            pass
        s = self.tls or self.sock
        if self.tls is not None and self.state == "done":
            try:
                self.tls.unwrap()  # send close_notify, do not wait for the peer's
            except (ssl.SSLError, OSError, ValueError):
                pass
        try:
            s.close()
        except OSError:
            pass

    def step(self):
        """Advance; returns None while in progress, else 'ok' or an error kind."""
        try:
            if self.state == "connect":
                err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    return "connect"
                self.w.sel.unregister(self.sock)
                self.tls = self.w.ctx.wrap_socket(self.sock, server_hostname=self.w.host,
                                                  do_handshake_on_connect=False)
                self.w.sel.register(self.tls, self.events, self)
                self.state = "handshake"
            if self.state == "handshake":
                try:
                    self.tls.do_handshake()
                except ssl.SSLWantReadError:
                    self.want(selectors.EVENT_READ)
                    return None
                except ssl.SSLWantWriteError:
                    self.want(selectors.EVENT_WRITE)
                    return None
                except (ssl.SSLError, OSError):
                    return "handshake"
                if self.tls.session_reused:
                    self.w.resumed += 1
                v = self.tls.version()
                self.w.versions[v] = self.w.versions.get(v, 0) + 1
                self.state = "send"
            if self.state == "send":
                while self.out:
                    try:
                        n = self.tls.send(self.out)
                    except ssl.SSLWantWriteError:
                        self.want(selectors.EVENT_WRITE)
                        return None
                    except ssl.SSLWantReadError:
                        self.want(selectors.EVENT_READ)
                        return None
                    self.out = self.out[n:]
                self.state = "recv"
                self.want(selectors.EVENT_READ)
            if self.state == "recv":
                while True:
                    try:
                        d = self.tls.recv(65536)
                    except ssl.SSLWantReadError:
                        return None
                    except ssl.SSLWantWriteError:
                        self.want(selectors.EVENT_WRITE)
                        return None
                    except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError):
                        d = b""  # closed without close_notify: judge what we got
                    if d:
                        self.buf += d
                        r = self.complete(eof=False)
                    else:
                        r = self.complete(eof=True) or "reset"
                    if r:
                        self.state = "done" if r == "ok" else "failed"
                        return r
        except (ssl.SSLError, OSError):
            return {"connect": "connect", "handshake": "handshake"}.get(self.state, "reset")
        return None

    def complete(self, eof):
        """'ok' / 'status' when the whole response is in, else None (need more)."""
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = bytes(self.buf[:head_end]).decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            return "status"
        status = int(parts[1])
        verdict = "ok" if 200 <= status < 400 else "status"
        clen, chunked = None, False
        for line in head[1:]:
            k, _, v = line.partition(":")
            k = k.strip().lower()
            if k == "content-length":
                clen = int(v.strip())
            elif k == "transfer-encoding" and "chunked" in v.lower():
                chunked = True
        body = len(self.buf) - head_end - 4
        if chunked:
            return verdict if self.buf.endswith(b"0\r\n\r\n") or eof else None
        if clen is not None:
            return verdict if body >= clen else ("reset" if eof else None)
        return verdict if eof else None


class Worker:
    def __init__(self, a, conns):
        self.port, self.host, self.conns, self.duration, self.timeout = a.port, a.host, conns, a.duration, a.timeout
        self.request = (f"GET {a.path} HTTP/1.1\r\nHost: {a.host}\r\nUser-Agent: gatehouse-bench\r\n"
                        f"Connection: close\r\n\r\n").encode()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        self.ctx = ctx
        self.sel = selectors.DefaultSelector()
        self.resumed = 0
        self.versions = {}
        self.lat_us = []
        self.errors = {}

    def run(self):
        start = time.monotonic()
        end = start + self.duration
        live = set()
        parent = os.getppid()

        def spawn():
            try:
                live.add(Conn(self))
            except OSError:
                self.errors["connect"] = self.errors.get("connect", 0) + 1

        for _ in range(self.conns):
            spawn()
        next_sweep = start + 0.5
        while True:
            now = time.monotonic()
            if now >= end:
                break
            for key, _ in self.sel.select(timeout=min(0.1, end - now)):
                c = key.data
                r = c.step()
                if r is None:
                    continue
                t = time.monotonic()
                live.discard(c)
                c.close()
                if t <= end:
                    if r == "ok":
                        self.lat_us.append(int((t - c.t0) * 1e6))
                    else:
                        self.errors[r] = self.errors.get(r, 0) + 1
                    spawn()
            if now >= next_sweep:  # per-connection timeout
                next_sweep = now + 0.5
                if os.getppid() != parent:  # the driver is gone (killed): stop now
                    break
                for c in [c for c in live if now - c.t0 > self.timeout]:
                    live.discard(c)
                    c.close()
                    self.errors["timeout"] = self.errors.get("timeout", 0) + 1
                    spawn()
            if not live:  # every connect failed at once: do not spin
                time.sleep(0.01)
                for _ in range(self.conns):
                    spawn()
        for c in live:  # in flight at the end of the window: not counted
            c.close()
        self.sel.close()
        return {"lat_us": self.lat_us, "errors": self.errors, "resumed": self.resumed,
                "versions": self.versions, "elapsed": time.monotonic() - start}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--conns", type=int, default=32, help="connections in flight, in total (default 32)")
    ap.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1),
                    help="client processes (default min(2, CPUs))")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    ap.add_argument("--host", default="bench.local", help="SNI and Host header (default bench.local)")
    ap.add_argument("--path", default="/")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-connection timeout, seconds (default 10)")
    ap.add_argument("--worker-conns", type=int, help=argparse.SUPPRESS)  # internal: run one worker
    a = ap.parse_args()
    if not (1 <= a.conns <= 10000 and 1 <= a.procs <= 64 and 0 < a.duration <= 3600):
        ap.error("--conns 1..10000, --procs 1..64, --duration 0..3600")

    if a.worker_conns is not None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: die quietly, the driver reports
        res = Worker(a, a.worker_conns).run()
        try:
            json.dump(res, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # the driver is gone
            os._exit(1)
        return 0

    procs = min(a.procs, a.conns)
    share = [a.conns // procs + (1 if i < a.conns % procs else 0) for i in range(procs)]
    base = [sys.executable, os.path.abspath(__file__), str(a.port), "--duration", str(a.duration),
            "--host", a.host, "--path", a.path, "--timeout", str(a.timeout)]
    children = []

    def on_signal(signum, frame):  # stop the workers too (they also stop when we are gone)
        for c in children:
            if c.poll() is None:
                c.kill()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for n in share:
        children.append(subprocess.Popen(base + ["--worker-conns", str(n)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE))
    lat, errors, resumed, versions, elapsed, failed = [], {}, 0, {}, [], 0
    for p in children:
        try:
            out, _ = p.communicate(timeout=a.duration + a.timeout + 30)
            r = json.loads(out)
        except (subprocess.TimeoutExpired, ValueError):
            p.kill()
            p.wait()
            failed += 1
            continue
        lat += r["lat_us"]
        resumed += r["resumed"]
        elapsed.append(r["elapsed"])
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for k, v in r["versions"].items():
            versions[k] = versions.get(k, 0) + v
    lat.sort()
    dur = max(elapsed) if elapsed else a.duration
    res = {
        "tool": "bench/tls_handshakes.py", "port": a.port, "conns": a.conns, "procs": procs,
        "duration_s": round(dur, 3), "handshakes": len(lat), "rps": len(lat) / dur if dur else None,
        "errors": sum(errors.values()), "error_kinds": errors, "resumed": resumed, "tls_versions": versions,
        "p50_ms": percentile(lat, 50) / 1000.0 if lat else None,
        "p99_ms": percentile(lat, 99) / 1000.0 if lat else None,
        "failed_workers": failed,
    }
    print(json.dumps(res))
    return 0 if lat and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
