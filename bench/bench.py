#!/usr/bin/env python3
"""Gatehouse benchmark driver: Gatehouse vs nginx vs HAProxy as reverse proxies.

Normally started by bench/run.sh (which installs the tools and builds Gatehouse);
can be run directly when everything is in place:

    python3 bench/bench.py [--smoke] [--rounds N] [--duration S]
                           [--scenarios h1-c64,h1-c256,h1-newconn,h1-1MiB,h2c,
                                        tls-keepalive,tls-handshake,tls-h2]
                           [--contenders gatehouse,nginx,haproxy]
                           [--gatehouse-bin PATH] [--no-direct] [--idle-conns N]
                           [--warmup S] [--pause S] [--docs PATH | --no-docs]
                           [--results-dir DIR] [--keep-tmp]

What it does (all traffic on 127.0.0.1, every loop bounded in count and time):
  * starts two nginx backends (1 worker each) answering "ok\\n" on / and a 1 MiB
    file on /1m;
  * starts each contender with one worker, round-robin over both backends,
    upstream keep-alive, plain HTTP/1.1 and h2c (prior knowledge), and (when a tls-*
    scenario is selected) a TLS listener (h2 + http/1.1 via ALPN) with a throwaway
    ECDSA P-256 CA and certificate for bench.local made with `openssl` per run;
  * for each round, for each scenario, runs the load against each contender in
    turn (A B C A B C ...), plus a direct-to-backend baseline for h1-c64;
  * records req/s, p50/p99 latency, the contender's CPU seconds (utime+stime of all
    its processes) and peak RSS (VmHWM, reset before each run via clear_refs);
  * once per contender, RSS with N idle keep-alive client connections open;
  * prints a Markdown table of medians over rounds and Gatehouse/nginx and
    Gatehouse/HAProxy ratios; writes it between the markers in docs/benchmarks.md
    (not with --smoke) and the raw results as JSON into bench/results/.

Exit status: 0 if every run succeeded, 1 if any run failed (the table is still
printed, docs/benchmarks.md is then left alone), 2 on a setup error.
Stdlib only.
"""
import argparse
import datetime
import gzip
import http.client
import json
import math
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import ssl
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
START_MARK = "<!-- bench:results:start -->"
END_MARK = "<!-- bench:results:end -->"
ONE_MIB = 1048576
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = 65536  # set to the RLIMIT_NOFILE we really got (children inherit it), see preflight()
# Connection caps (>= 10,000 idle + load), lowered in preflight() when RLIMIT_NOFILE is small.
NGINX_CONNS = 16384  # nginx worker_connections: ~1 fd per connection
HAPROXY_MAXCONN = 16384  # HAProxy maxconn: it reserves 2 fds per connection
WORKERS = 1  # each contender's workers (nginx worker_processes, HAProxy nbthread, Gatehouse workers): --workers

ALL_CONTENDERS = ["gatehouse", "nginx", "haproxy", "baseline"]
DISPLAY = {"gatehouse": "Gatehouse", "nginx": "nginx", "haproxy": "HAProxy", "direct": "direct (no proxy)",
           "baseline": "Gatehouse baseline"}

# name -> load parameters; smoke_* are the tiny loads used by --smoke
SCENARIOS = {
    "h1-c64": dict(tool="wrk", conns=64, path="/", smoke_conns=8,
                   desc="HTTP/1.1 keep-alive, 64 connections, `GET /` (3-byte body)"),
    "h1-c256": dict(tool="wrk", conns=256, path="/", smoke_conns=16,
                    desc="HTTP/1.1 keep-alive, 256 connections, `GET /`"),
    "h1-newconn": dict(tool="wrk", conns=32, path="/", close=True, smoke_conns=4,
                       desc="HTTP/1.1 `Connection: close`: a new TCP connection per request, 32 at a time"),
    "h1-1MiB": dict(tool="wrk", conns=16, path="/1m", smoke_conns=2,
                    desc="HTTP/1.1 keep-alive, 16 connections, `GET /1m` (1 MiB body)"),
    "h1-1MiB-text": dict(tool="wrk", conns=16, path="/1mtext", smoke_conns=2,
                         desc="HTTP/1.1 keep-alive, 16 connections, `GET /1mtext` (1 MiB of text) on the "
                              "compressing route, the client offering no encoding (so nothing is compressed)"),
    "h1-1MiB-gzip": dict(tool="wrk", conns=16, path="/1mtext", gzip=True, smoke_conns=2,
                         desc="as h1-1MiB-text with `Accept-Encoding: gzip`: each proxy compresses "
                              "(gzip level 5: nginx `gzip_comp_level 5`, Gatehouse `compress = [\"gzip\"]`, "
                              "HAProxy `compression algo gzip`)"),
    "h1-1MiB-gzip-fast": dict(tool="wrk", conns=16, path="/1mtext-fast", gzip=True, smoke_conns=2,
                              desc="as h1-1MiB-gzip at each proxy's fastest deflate, the class HAProxy's libslz "
                                   "is in (nginx `gzip_comp_level 1`, Gatehouse `compress_level = \"fastest\"`, "
                                   "HAProxy the same libslz)"),
    "h2c": dict(tool="h2load", conns=16, streams=10, path="/", smoke_conns=2, smoke_streams=4,
                desc="h2c (prior knowledge), 16 connections x 10 concurrent streams, `GET /`"),
    # TLS scenarios: the contender's TLS listener (see make_tls for the certificate).
    "tls-keepalive": dict(tool="wrk", tls=True, conns=64, path="/", host="bench.local", smoke_conns=8,
                          desc="HTTPS (HTTP/1.1 over TLS) keep-alive, 64 connections, `GET /`"),
    "tls-handshake": dict(tool="tlshs", tls=True, conns=16, procs=2, path="/", smoke_conns=4,
                          desc="full TLS handshakes: a new TLS connection per request, no session "
                               "resumption, 16 at a time (req/s = handshakes/s)"),
    "tls-h2": dict(tool="h2load", tls=True, conns=16, streams=10, path="/", smoke_conns=2, smoke_streams=4,
                   desc="h2 over TLS (ALPN), 16 connections x 10 concurrent streams, `GET /`"),
}
TLS_HOST = "bench.local"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class SetupError(Exception):
    pass


# --------------------------------------------------------------------------- processes

STARTED = []  # every long-running Proc we started, stopped in reverse order on exit


class Proc:
    """A server we started, in its own session/process group so it (and its workers)
    can be stopped by group id, and so a Ctrl-C in the terminal reaches us first."""

    def __init__(self, name, argv, tmp, cwd=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(tmp, f"{name}.log")
        self._log = open(self.log_path, "wb")
        try:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                          cwd=cwd or tmp, start_new_session=True)
        except OSError as e:
            self._log.close()
            raise SetupError(f"cannot start {name}: {' '.join(argv)}: {e}")
        self.pid = self.popen.pid
        STARTED.append(self)

    def alive(self):
        return self.popen.poll() is None

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def pids(self):
        """The leader and all its descendants (e.g. nginx master + workers)."""
        if not self.alive():
            return []
        return descendants(self.pid)

    def stop(self, grace=5.0):
        if self.popen.returncode is not None and self._log.closed:
            return  # stopped already (its pid may belong to another process by now)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)  # pgid == pid (start_new_session)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.popen.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # the group may outlive its leader for a moment (workers): make sure it is gone
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()


def stop_all():
    while STARTED:
        p = STARTED.pop()
        try:
            p.stop()
        except Exception as e:  # keep going: stop every other process too
            log(f"warning: stopping {p.name} (pid {p.pid}): {e}")


def descendants(pid):
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pid):
    """(utime, stime) of a process in clock ticks (fields 14, 15 of /proc/PID/stat), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    fields = st[st.rindex(")") + 2:].split()
    return int(fields[11]), int(fields[12])


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pss_kib(pids):
    """Proportional set size: shared pages (nginx master/worker) are not counted twice."""
    total, seen = 0, False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        seen = True
                        break
        except OSError:
            pass
    return total if seen else None


def reset_hwm(pids):
    """Reset VmHWM to the current RSS (Linux >= 4.0, needs ptrace rights on the pid)."""
    ok = bool(pids)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


def sum_kib(pids, key):
    vals = [status_kib(p, key) for p in pids]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


def free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise SetupError(f"{proc.name} exited with status {proc.popen.returncode} before listening on "
                             f"127.0.0.1:{port}; command: {' '.join(proc.argv)}\n--- log tail ---\n{proc.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    tail = proc.log_tail() if proc else ""
    raise SetupError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s "
                     f"({proc.name if proc else '?'})\n--- log tail ---\n{tail}")


def tool_output(argv, timeout=10):
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return (r.stdout + r.stderr).decode("utf-8", "replace").strip(), r.returncode
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e), -1


# --------------------------------------------------------------------------- TLS material

OPENSSL_CNF = """[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:bench.local, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def make_tls(tmp):
    """A throwaway CA and a server certificate for bench.local (+ IP SAN 127.0.0.1), both
    ECDSA P-256, made with the openssl command line in TMP/tls. Keys are mode 0600.
    Returns the paths: cert (leaf then CA: the full chain), key, combined (cert chain +
    key, for HAProxy), ca (to verify with)."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, f) for k, f in (("cnf", "openssl.cnf"), ("ca_key", "ca.key"), ("ca", "ca.pem"),
                                             ("key", "key.pem"), ("csr", "leaf.csr"), ("leaf", "leaf.pem"),
                                             ("cert", "cert.pem"), ("combined", "combined.pem"))}
    with open(p["cnf"], "w") as f:
        f.write(OPENSSL_CNF)
    for k in ("ca_key", "key", "combined"):  # created 0600 before anything is written into them
        os.close(os.open(p[k], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        os.chmod(p[k], 0o600)
    serial = "0x" + os.urandom(8).hex()
    steps = [
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p["ca_key"]],
        ["openssl", "req", "-config", p["cnf"], "-x509", "-new", "-key", p["ca_key"], "-sha256", "-days", "2",
         "-subj", "/CN=Gatehouse bench throwaway CA", "-extensions", "v3_ca", "-out", p["ca"]],
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", p["key"]],
        ["openssl", "req", "-config", p["cnf"], "-new", "-key", p["key"], "-subj", f"/CN={TLS_HOST}",
         "-out", p["csr"]],
        ["openssl", "x509", "-req", "-in", p["csr"], "-CA", p["ca"], "-CAkey", p["ca_key"], "-set_serial", serial,
         "-sha256", "-days", "2", "-extfile", p["cnf"], "-extensions", "v3_leaf", "-out", p["leaf"]],
    ]
    for argv in steps:
        out, rc = tool_output(argv, timeout=30)
        if rc != 0:
            raise SetupError(f"certificate generation failed: {' '.join(argv)}\n{out[-1500:]}")
    with open(p["leaf"]) as f:
        leaf = f.read()
    with open(p["ca"]) as f:
        ca = f.read()
    with open(p["key"]) as f:
        key = f.read()
    with open(p["cert"], "w") as f:
        f.write(leaf + ca)
    with open(p["combined"], "w") as f:
        f.write(leaf + ca + key)
    for k in ("ca_key", "key", "combined"):
        os.chmod(p[k], 0o600)
    return p


# --------------------------------------------------------------------------- servers

def nginx_temp_paths(prefix):
    """Debian's nginx has absolute compiled-in temp paths under /var/lib/nginx: point
    every one that exists in this build into our prefix."""
    out, _ = tool_output(["nginx", "-V"])
    lines = [f"client_body_temp_path {prefix}/tmp/body;", f"proxy_temp_path {prefix}/tmp/proxy;"]
    for m in ("fastcgi", "uwsgi", "scgi"):
        if f"--without-http_{m}_module" not in out:
            lines.append(f"{m}_temp_path {prefix}/tmp/{m};")
    return "\n    ".join(lines)


def nginx_common(prefix, worker_connections, workers=1):
    return f"""daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {NOFILE};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {worker_connections}; }}
"""


def start_nginx(name, tmp, http_block, workers=1):
    prefix = os.path.join(tmp, name)
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(nginx_common(prefix, NGINX_CONNS, workers) + http_block(prefix))
    return Proc(name, ["nginx", "-p", prefix + "/", "-e", prefix + "/error.log", "-c", conf], tmp)


def start_backend(i, tmp, port):
    www = os.path.join(tmp, f"backend{i}", "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "1m"), "wb") as f:
        f.write(os.urandom(ONE_MIB))
    os.chmod(os.path.join(www, "1m"), 0o644)
    with open(os.path.join(www, "1mtext"), "wb") as f:
        f.write(text_mib())
    os.chmod(os.path.join(www, "1mtext"), 0o644)

    def http(prefix):
        return f"""http {{
    access_log off;
    {nginx_temp_paths(prefix)}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 300s;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {www};
        location = /1m {{ }}
        location = /1mtext {{ types {{ }} default_type text/plain; }}
        location = /1mtext-fast {{ alias {www}/1mtext; types {{ }} default_type text/plain; }}
        location / {{
            default_type text/plain;
            return 200 "ok\\n";
        }}
    }}
}}
"""
    return start_nginx(f"backend{i}", tmp, http)


def text_mib():
    """1 MiB of log-like text (zlib level 5 makes 172 KiB of it): the same bytes on every backend."""
    lines, n = [], 0
    i = 0
    while n < ONE_MIB:
        line = (f"2026-12-02T02:{i % 60:02d}:{(i * 7) % 60:02d}Z GET /api/v1/items/{i * 7919 % 100000} "
                f"200 {i * 31 % 5000} bytes in {i % 97}ms from 10.0.{i % 256}.{i * 13 % 256}\n")
        lines.append(line)
        n += len(line)
        i += 1
    return "".join(lines).encode()[:ONE_MIB]


def start_nginx_proxy(tmp, h1, h2, backends, tls_port=None, tls=None):
    servers = "\n        ".join(f"server 127.0.0.1:{p};" for p in backends)
    tls_conf = ""
    if tls_port:
        # session resumption on (shared cache; tickets are on by default), like Gatehouse
        tls_conf = f"""
        listen 127.0.0.1:{tls_port} ssl http2 backlog=4096;
        server_name {TLS_HOST};
        ssl_certificate {tls['cert']};
        ssl_certificate_key {tls['key']};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;"""

    def http(prefix):
        return f"""http {{
    access_log off;
    {nginx_temp_paths(prefix)}
    keepalive_requests 100000;   # client side; the default (1000) would close wrk's connections
    keepalive_timeout 300s;
    upstream b {{
        {servers}
        keepalive 64;
        keepalive_requests 100000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{h1} backlog=4096;
        listen 127.0.0.1:{h2} http2 backlog=4096;{tls_conf}
        location / {{
            proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /1mtext {{
            proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            gzip on;
            gzip_types text/plain;
            gzip_comp_level 5;
            gzip_proxied any;
            gzip_vary on;
        }}
        location = /1mtext-fast {{
            proxy_pass http://b;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            gzip on;
            gzip_types text/plain;
            gzip_comp_level 1;
            gzip_proxied any;
            gzip_vary on;
        }}
    }}
}}
"""
    return start_nginx("nginx", tmp, http, WORKERS)


def start_haproxy(tmp, h1, h2, backends, tls_port=None, tls=None):
    tls_global = "\n    ssl-default-bind-options ssl-min-ver TLSv1.2" if tls_port else ""
    tls_bind = f"\n    bind 127.0.0.1:{tls_port} ssl crt {tls['combined']} alpn h2,http/1.1" if tls_port else ""
    servers = "\n    ".join(f"server s{i} 127.0.0.1:{p}" for i, p in enumerate(backends, 1))
    cfg = os.path.join(tmp, "haproxy.cfg")
    with open(cfg, "w") as f:
        # HAProxy wants 2 fds per maxconn and refuses to start if it cannot raise the limit
        # that far; set ulimit-n to what we have (the idle test needs ~1 fd per connection).
        f.write(f"""global
    nbthread {WORKERS}
    maxconn {HAPROXY_MAXCONN}
    ulimit-n {NOFILE}{tls_global}

defaults
    mode http
    option http-keep-alive
    http-reuse always
    maxconn {HAPROXY_MAXCONN}
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    timeout http-request 30s

frontend bench
    bind 127.0.0.1:{h1}
    bind 127.0.0.1:{h2} proto h2{tls_bind}
    default_backend backends

backend backends
    balance roundrobin
    compression algo gzip
    compression type text/plain
    {servers}
""")
    return Proc("haproxy", ["haproxy", "-db", "-f", cfg], tmp)


def gatehouse_toml(port, backends, tls_port=None, tls=None, access_log="off", compress=True):
    servers = ", ".join(f'"127.0.0.1:{p}"' for p in backends)
    tls_listener = tls_site = ""
    if tls_port:
        # ALPN h2 + http/1.1 is automatic; `tls` must come before the [[site.route]] sub-table
        tls_listener = f"""
[[listener]]
name = "bench-tls"
bind = "127.0.0.1:{tls_port}"
tls = true
"""
        tls_site = f'tls = {{ cert = "{tls["cert"]}", key = "{tls["key"]}" }}\n'
    # Compression on its own route, so that the other scenarios' path has no compress rule to look at.
    compress_route = ('  [[site.route]]\n  path = "/1mtext"\n  pool = "backends"\n  compress = ["gzip"]\n'
                      '  [[site.route]]\n  path = "/1mtext-fast"\n  pool = "backends"\n  compress = ["gzip"]\n'
                      '  compress_level = "fastest"\n'
                      if compress else "")
    return f"""[server]
workers = {WORKERS}
log_level = "warn"
access_log = "{access_log}"

[[listener]]
name = "bench"
bind = "127.0.0.1:{port}"
{tls_listener}
[[site]]
hosts = ["bench.local"]
default = true
{tls_site}  [[site.route]]
  path = "/"
  pool = "backends"
{compress_route}
[pool.backends]
balance = "round_robin"
servers = [{servers}]
"""


def start_gatehouse(tmp, binary, port, backends, tls_port=None, tls=None, name="gatehouse", access_log="off"):
    # Each Gatehouse in its own folder: it watches its config's folder.
    folder = os.path.join(tmp, name)
    os.makedirs(folder, exist_ok=True)
    cfg = os.path.join(folder, "gatehouse.toml")
    with open(cfg, "w") as f:
        if access_log == "file":
            access_log = os.path.join(folder, "access.log")
        # A baseline build may predate `compress`: its /1mtext goes through the plain route.
        f.write(gatehouse_toml(port, backends, tls_port, tls, access_log, compress=(name != "baseline")))
    return Proc(name, [binary, "run", "-c", cfg], tmp)


class Target:
    def __init__(self, name, h1_port, h2_port, proc, tls_port=None):
        self.name, self.h1_port, self.h2_port, self.proc = name, h1_port, h2_port, proc
        self.tls_port = tls_port

    def pids(self):
        return self.proc.pids() if self.proc else []


# --------------------------------------------------------------------------- checks

def http_get(port, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "bench.local"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# (contender, path) -> bytes of its gzip answer to the 1 MiB text: the ratio each compressing scenario buys.
GZIP_SIZES = {}


def gzip_size(t, path):
    """The size of a contender's gzip-encoded answer for `path` (None when it does not compress)."""
    conn = http.client.HTTPConnection("127.0.0.1", t.h1_port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": "bench.local", "Accept-Encoding": "gzip"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 200 or r.getheader("Content-Encoding") != "gzip":
            return None
        if len(gzip.decompress(body)) != ONE_MIB:
            raise SetupError(f"{t.name}: GET {path} with gzip did not decompress to {ONE_MIB} bytes")
        return len(body)
    except (OSError, http.client.HTTPException) as e:
        raise SetupError(f"{t.name}: GET {path} with gzip failed: {e!r}")
    finally:
        conn.close()


def sanity_check(t, h2=True):
    """Fail early and clearly when a contender does not answer the way the load expects."""
    try:
        st, body = http_get(t.h1_port, "/")
        if st != 200 or body != b"ok\n":
            raise SetupError(f"{t.name}: GET / answered {st} {body[:80]!r}, expected 200 'ok\\n'")
        st, body = http_get(t.h1_port, "/1m")
        if st != 200 or len(body) != ONE_MIB:
            raise SetupError(f"{t.name}: GET /1m answered {st} with {len(body)} bytes, expected 200 and {ONE_MIB}")
    except (OSError, http.client.HTTPException) as e:
        raise SetupError(f"{t.name}: HTTP/1.1 request to 127.0.0.1:{t.h1_port} failed: {e!r}")
    if h2:
        out, rc = tool_output(["h2load", "-n", "20", "-c", "1", "-m", "1", f"http://127.0.0.1:{t.h2_port}/"], timeout=20)
        m = re.search(r"(\d+) succeeded", out)
        if rc != 0 or not m or int(m.group(1)) != 20:
            raise SetupError(f"{t.name}: h2c check on 127.0.0.1:{t.h2_port} failed (rc {rc}); leave h2c out of "
                             f"--scenarios to run the rest:\n{out[-1500:]}")


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1:port with SNI and certificate name check for TLS_HOST (like curl --resolve)."""

    def __init__(self, port, ctx, timeout):
        super().__init__(TLS_HOST, port, timeout=timeout, context=ctx)
        self._ctx = ctx

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=TLS_HOST)


def tls_check(t, tls, h2=True, timeout=10):
    """Check a contender's TLS listener before measuring: GET / over TLS with the
    certificate verified against the throwaway CA for bench.local; ALPN offers h2; curl
    (when installed) the same way; h2load over TLS when tls-h2 is selected."""
    port = t.tls_port
    try:
        ctx = ssl.create_default_context(cafile=tls["ca"])  # check_hostname on: bench.local
        ctx.set_alpn_protocols(["http/1.1"])
        conn = _PinnedHTTPS(port, ctx, timeout)
        try:
            conn.request("GET", "/", headers={"Host": TLS_HOST})
            r = conn.getresponse()
            st, body = r.status, r.read()
            version = conn.sock.version()
        finally:
            conn.close()
        if st != 200 or body != b"ok\n":
            raise SetupError(f"{t.name}: GET https://{TLS_HOST}:{port}/ answered {st} {body[:80]!r}, "
                             f"expected 200 'ok\\n'")
        ctx2 = ssl.create_default_context(cafile=tls["ca"])
        ctx2.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", port), timeout) as sock:
            with ctx2.wrap_socket(sock, server_hostname=TLS_HOST) as ss:
                alpn = ss.selected_alpn_protocol()
    except (OSError, http.client.HTTPException) as e:  # ssl.SSLError is an OSError
        raise SetupError(f"{t.name}: HTTPS request to 127.0.0.1:{port} (SNI {TLS_HOST}, verified against the "
                         f"bench CA) failed: {e!r}\n--- log tail ---\n{t.proc.log_tail() if t.proc else ''}")
    if h2 and alpn != "h2":
        raise SetupError(f"{t.name}: TLS listener 127.0.0.1:{port} did not select h2 via ALPN (got {alpn!r}); "
                         f"leave tls-h2 out of --scenarios to run the rest")
    if shutil.which("curl"):
        out, rc = tool_output(["curl", "-sS", "--max-time", str(timeout), "--cacert", tls["ca"], "--resolve",
                               f"{TLS_HOST}:{port}:127.0.0.1", f"https://{TLS_HOST}:{port}/"], timeout=timeout + 5)
        if rc != 0 or out != "ok":
            raise SetupError(f"{t.name}: curl https://{TLS_HOST}:{port}/ (--cacert bench CA) failed "
                             f"(rc {rc}): {out[-500:]}")
    if h2:
        out, rc = tool_output(["h2load", "-n", "20", "-c", "1", "-m", "1", f"https://127.0.0.1:{port}/"], timeout=20)
        m = re.search(r"(\d+) succeeded", out)
        if rc != 0 or not m or int(m.group(1)) != 20:
            raise SetupError(f"{t.name}: h2-over-TLS check on 127.0.0.1:{port} failed (rc {rc}); leave tls-h2 "
                             f"out of --scenarios to run the rest:\n{out[-1500:]}")
    return version, alpn


# --------------------------------------------------------------------------- load tools

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def wrk_time_ms(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", s)
    return float(m.group(1)) * UNIT_MS[m.group(2)] if m else None


def parse_wrk(out):
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    r["requests"] = int(m.group(1)) if m else None
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)\s*$", out, re.M)
        r[key] = wrk_time_ms(m.group(1)) if m else None
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    r["errors"] = errors
    return r


def parse_h2load(out, log_file):
    r = {}
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    r["rps"] = float(m.group(1)) if m else None
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", out)
    if m:
        total, started, done, ok, failed, errored, tmo = (int(x) for x in m.groups())
        r["requests"] = ok
        r["errors"] = failed + errored + tmo
    else:
        r["requests"], r["errors"] = None, None
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m and r["errors"] is not None:
        r["errors"] += int(m.group(3)) + int(m.group(4))
    # h2load prints only min/max/mean/sd; percentiles come from its per-request log
    lat = []
    try:
        with open(log_file) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3:
                    lat.append(int(parts[2]) / 1000.0)
    except (OSError, ValueError):
        pass
    lat.sort()
    r["p50_ms"] = percentile(lat, 50)
    r["p99_ms"] = percentile(lat, 99)
    r["latency_samples"] = len(lat)
    return r


def parse_tlshs(out):
    """bench/tls_handshakes.py prints one JSON object (last line of stdout)."""
    r = {"rps": None, "requests": None, "errors": None, "p50_ms": None, "p99_ms": None}
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                j = json.loads(line)
            except ValueError:
                break
            r.update(rps=j.get("rps"), requests=j.get("handshakes"), errors=j.get("errors"),
                     p50_ms=j.get("p50_ms"), p99_ms=j.get("p99_ms"), resumed=j.get("resumed"),
                     error_kinds=j.get("error_kinds"), tls_versions=j.get("tls_versions"))
            break
    return r


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = max(0, math.ceil(p / 100.0 * len(sorted_vals)) - 1)  # nearest rank
    return sorted_vals[k]


def load_command(scn, port, duration, smoke, tmp):
    s = SCENARIOS[scn]
    conns = s["smoke_conns"] if smoke else s["conns"]
    url = f"{'https' if s.get('tls') else 'http'}://127.0.0.1:{port}{s['path']}"
    if s["tool"] == "wrk":
        argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"]
        if s.get("close"):
            argv += ["-H", "Connection: close"]
        if s.get("gzip"):
            argv += ["-H", "Accept-Encoding: gzip"]
        if s.get("host"):
            argv += ["-H", f"Host: {s['host']}"]
        return argv + [url], None
    if s["tool"] == "tlshs":
        procs = min(s["procs"], os.cpu_count() or 1, conns)
        return [sys.executable, os.path.join(HERE, "tls_handshakes.py"), str(port), f"--conns={conns}",
                f"--procs={procs}", f"--duration={duration}", f"--host={TLS_HOST}", f"--path={s['path']}"], None
    streams = s["smoke_streams"] if smoke else s["streams"]
    log_file = os.path.join(tmp, "h2load-requests.log")
    return ["h2load", f"-c{conns}", f"-m{streams}", "-D", str(duration), f"--log-file={log_file}", url], log_file


def run_one(target, scn, duration, smoke, tmp):
    """One measured run: load tool against target, CPU/RSS of target's processes."""
    tool = SCENARIOS[scn]["tool"]
    if SCENARIOS[scn].get("tls"):
        port = target.tls_port
    else:
        port = target.h2_port if tool == "h2load" else target.h1_port
    argv, log_file = load_command(scn, port, duration, smoke, tmp)
    if log_file and os.path.exists(log_file):
        os.unlink(log_file)
    pids = target.pids()
    hwm_reset = reset_hwm(pids)
    before = {p: cpu_ticks(p) for p in pids}
    t0 = time.monotonic()
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=duration + 30)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        rc = r.returncode
    except subprocess.TimeoutExpired as e:
        out = ((e.stdout or b"") + (e.stderr or b"")).decode("utf-8", "replace")
        rc = "timeout"
    wall = time.monotonic() - t0
    res = {"scenario": scn, "contender": target.name, "cmd": " ".join(argv), "rc": rc, "wall_s": round(wall, 3)}
    if tool == "wrk":
        res.update(parse_wrk(out))
    elif tool == "h2load":
        res.update(parse_h2load(out, log_file))
    else:
        res.update(parse_tlshs(out))
        if res.get("resumed"):
            res["error"] = f"{res['resumed']} TLS session(s) resumed: not full handshakes"
    if target.proc is not None:
        after_pids = target.pids()
        cpu = sys_ticks = 0
        for p in set(pids) | set(after_pids):
            a = cpu_ticks(p)
            b = before.get(p) or (0, 0)
            if a is not None:
                cpu += (a[0] - b[0]) + (a[1] - b[1])
                sys_ticks += a[1] - b[1]
        res["cpu_s"] = cpu / CLK_TCK
        # The kernel's part (stime): the socket work every proxy pays; the rest is the proxy's own code.
        res["sys_s"] = sys_ticks / CLK_TCK
        res["peak_rss_kib"] = sum_kib(after_pids, "VmHWM")
        res["hwm_reset"] = hwm_reset
        res["nprocs"] = len(after_pids)
        res["threads"] = sum_kib(after_pids, "Threads")  # not KiB: the same "Key: N" parser
        if not target.proc.alive():
            res["error"] = f"{target.name} died during the run (status {target.proc.popen.returncode})"
    else:
        res["cpu_s"] = res["peak_rss_kib"] = None
    if res.get("requests") and res.get("cpu_s") is not None:
        res["cpu_us_per_req"] = res["cpu_s"] * 1e6 / res["requests"]
        res["sys_us_per_req"] = res["sys_s"] * 1e6 / res["requests"]
    if rc != 0 and "error" not in res:
        res["error"] = f"load tool exited with {rc}"
    elif not res.get("rps") or not res.get("requests"):
        res.setdefault("error", "no successful requests / unparseable output")
    if log_file and os.path.exists(log_file):
        os.unlink(log_file)
    res["output"] = out[-4000:]
    return res


# --------------------------------------------------------------------------- idle connections

# How long the idle connections sit before RSS is read: lazy frees and timers settle, and Gatehouse parks an
# HTTP/1 connection 1 s after its last request (nginx frees its buffers at once, HAProxy when they empty).
IDLE_SETTLE_S = 3.0


def idle_test(target, count, mode="plain", timeout=120):
    """RSS of the contender with `count` idle keep-alive client connections open (`mode`: plain HTTP/1.1,
    HTTP/1.1 over TLS, or h2c)."""
    port = {"plain": target.h1_port, "tls": target.tls_port, "h2": target.h2_port}[mode]
    pids = target.pids()
    res = {"contender": target.name, "mode": mode, "conns": count, "rss_before_kib": sum_kib(pids, "VmRSS"),
           "pss_before_kib": pss_kib(pids)}
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "idle_conns.py"), str(port), str(count),
                          "--mode", mode, "--timeout", str(timeout), "--hold", "60"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_line(p, timeout + 15)
        m = re.match(r"READY wanted=\d+ ok=(\d+) failed=(\d+) secs=([\d.]+)", line or "")
        if not m:
            err = ""
            if p.poll() is not None:
                err = p.stderr.read()[-500:]
            res["error"] = f"idle_conns.py did not get ready: {line!r} {err}".strip()
            return res
        res["ok"], res["failed"], res["open_secs"] = int(m.group(1)), int(m.group(2)), float(m.group(3))
        time.sleep(IDLE_SETTLE_S)
        pids = target.pids()
        res["rss_with_conns_kib"] = sum_kib(pids, "VmRSS")
        res["pss_with_conns_kib"] = pss_kib(pids)
        p.stdin.write("\n")
        p.stdin.flush()
        line = read_line(p, 30)
        m = re.match(r"ALIVE (\d+)", line or "")
        res["alive_at_end"] = int(m.group(1)) if m else None
        if res["rss_before_kib"] is not None and res["rss_with_conns_kib"] is not None and res["ok"]:
            res["kib_per_conn"] = (res["rss_with_conns_kib"] - res["rss_before_kib"]) / res["ok"]
        if res["failed"]:
            res["error"] = f"{res['failed']} of {count} connections failed to set up"
        return res
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()


def read_line(p, timeout):
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    try:
        if sel.select(timeout=timeout):
            return p.stdout.readline().strip()
        return None
    finally:
        sel.close()


# --------------------------------------------------------------------------- report

def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def fmt(v, kind):
    if v is None:
        return "—"
    if kind == "rps":
        return f"{v:,.0f}"
    if kind == "ms":
        return f"{v:.3f}" if v < 1 else f"{v:.2f}"
    if kind == "s":
        return f"{v:.2f}"
    if kind == "us":
        return f"{v:.1f}"
    if kind == "mib":
        return f"{v / 1024:.1f}"
    if kind == "ratio":
        return f"{v:.2f}x"
    return str(v)


def summarize(runs, scenarios, contenders):
    """{(scenario, contender): medians} over successful runs."""
    summ = {}
    for scn in scenarios:
        for c in contenders:
            rs = [r for r in runs if r["scenario"] == scn and r["contender"] == c]
            if not rs:
                continue
            good = [r for r in rs if "error" not in r]
            summ[(scn, c)] = {
                "runs": len(rs), "failed": len(rs) - len(good),
                "rps": med([r.get("rps") for r in good]),
                "p50_ms": med([r.get("p50_ms") for r in good]),
                "p99_ms": med([r.get("p99_ms") for r in good]),
                "cpu_s": med([r.get("cpu_s") for r in good]),
                "cpu_us_per_req": med([r.get("cpu_us_per_req") for r in good]),
                "sys_us_per_req": med([r.get("sys_us_per_req") for r in good]),
                "peak_rss_kib": med([r.get("peak_rss_kib") for r in good]),
                "errors": sum(r.get("errors") or 0 for r in rs),
                "requests": sum(r.get("requests") or 0 for r in rs),
            }
    return summ


def ratio(a, b):
    return a / b if a is not None and b else None


def machine_info(gatehouse_bin, contenders):
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":")[0].strip() in ("model name", "Hardware", "Processor", "cpu model"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": cpu or platform.processor() or "unknown",
        "nginx": tool_output(["nginx", "-v"])[0].replace("nginx version: nginx/", ""),
        "haproxy": tool_output(["haproxy", "-v"])[0].splitlines()[0].replace("HAProxy version ", "").split()[0]
        if shutil.which("haproxy") else None,
        "wrk": tool_output(["wrk", "-v"])[0].splitlines()[0].split(" Copyright")[0].replace(" [epoll]", ""),
        "h2load": tool_output(["h2load", "--version"])[0],
        "python_ssl": ssl.OPENSSL_VERSION,
    }
    if shutil.which("openssl"):
        info["openssl"] = tool_output(["openssl", "version"])[0].splitlines()[0].split(" (Library")[0]
    head, rc = tool_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    if rc == 0:
        dirty, _ = tool_output(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
        info["gatehouse_commit"] = head + ("-dirty" if dirty else "")
    if "gatehouse" in contenders:
        info["gatehouse_bin"] = os.path.abspath(gatehouse_bin)
        v, rc = tool_output([gatehouse_bin, "--version"], timeout=5)
        v = v.splitlines()[0] if rc == 0 and v else ""
        info["gatehouse"] = re.sub(r"^gatehouse\s+", "", v, flags=re.I) or None
    return info


def render(summ, idle, scenarios, contenders, direct, info, params, runs):
    L = []
    smoke = " — SMOKE RUN (tiny loads, not a benchmark)" if params["smoke"] else ""
    L.append(f"### Results{smoke}")
    L.append("")
    L.append(f"- Date: {info['date']}")
    L.append(f"- Machine: {info['nproc']} CPUs ({info['cpu']}), Linux {info['kernel']}")
    tools = [f"nginx {info['nginx']}", f"HAProxy {info['haproxy']}", info["wrk"], info["h2load"]]
    if "gatehouse" in contenders:
        tools.insert(0, f"Gatehouse {info.get('gatehouse') or ''} (commit {info.get('gatehouse_commit', '?')})")
    tls_scns = [s for s in scenarios if SCENARIOS[s].get("tls")]
    if tls_scns:
        tools.append(f"{info.get('openssl') or '?'} (certificates; clients use {info.get('python_ssl')})")
    L.append(f"- Versions: {', '.join(t.strip() for t in tools)}")
    if "/debug/" in (info.get("gatehouse_bin") or ""):
        L.append(f"- **Warning: Gatehouse is a debug build ({info['gatehouse_bin']}): its figures mean nothing.**")
    L.append(f"- Runs: {params['rounds']} round(s) x {params['duration']} s per scenario and contender, "
             f"contenders alternated within each round; figures are medians over rounds. "
             f"Contenders: {', '.join(DISPLAY[c] for c in contenders)}, "
             f"{params['workers']} worker(s) each.")
    L.append("")
    L.append("| scenario | contender | req/s | p50 ms | p99 ms | proxy CPU s | CPU µs/req | of which kernel | "
             "peak RSS MiB | errors |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    warn = []
    for scn in scenarios:
        cs = list(contenders) + (["direct"] if direct and scn == "h1-c64" else [])
        for c in cs:
            s = summ.get((scn, c))
            if not s:
                continue
            name = DISPLAY[c]
            if s["failed"]:
                name += f" ({s['failed']}/{s['runs']} runs failed)"
            L.append(f"| {scn} | {name} | {fmt(s['rps'], 'rps')} | {fmt(s['p50_ms'], 'ms')} | "
                     f"{fmt(s['p99_ms'], 'ms')} | {fmt(s['cpu_s'], 's')} | {fmt(s['cpu_us_per_req'], 'us')} | "
                     f"{fmt(s['sys_us_per_req'], 'us')} | {fmt(s['peak_rss_kib'], 'mib')} | {s['errors']} |")
            if s["requests"] and s["errors"] > 0.01 * s["requests"]:
                warn.append(f"{scn}/{DISPLAY[c]}: {s['errors']} errors in {s['requests']} requests")
    if warn:
        L.append("")
        L.append("**Warning — more than 1% errors, figures not comparable:** " + "; ".join(warn))
    if "gatehouse" in contenders and ({"nginx", "haproxy", "baseline"} & set(contenders)):
        others = [c for c in ("nginx", "haproxy", "baseline") if c in contenders]
        L.append("")
        L.append("Ratios (Gatehouse / other). req/s: higher is better for Gatehouse; p99: lower is better.")
        L.append("")
        L.append("| scenario | " + " | ".join(f"req/s vs {DISPLAY[o]}" for o in others) + " | "
                 + " | ".join(f"p99 vs {DISPLAY[o]}" for o in others) + " |")
        L.append("|---|" + "---:|" * (2 * len(others)))
        for scn in scenarios:
            g = summ.get((scn, "gatehouse"))
            if not g:
                continue
            # The baseline build runs without `compress` (it may predate it): on the gzip scenario it does other
            # work, so there is no ratio to give.
            same = [o for o in others if not (o == "baseline" and SCENARIOS[scn].get("gzip"))]
            cells = [fmt(ratio(g["rps"], (summ.get((scn, o)) or {}).get("rps")), "ratio") if o in same else "—"
                     for o in others]
            cells += [fmt(ratio(g["p99_ms"], (summ.get((scn, o)) or {}).get("p99_ms")), "ratio") if o in same
                      else "—" for o in others]
            L.append(f"| {scn} | " + " | ".join(cells) + " |")
        if "baseline" in others and any(SCENARIOS[scn].get("gzip") for scn in scenarios):
            L.append("")
            L.append("The baseline build runs without `compress` (it may predate it), so its gzip figures are of "
                     "uncompressed responses and have no ratio.")
    sized = [scn for scn in scenarios if SCENARIOS[scn].get("gzip")]
    if sized:
        L.append("")
        L.append("What each compressing scenario sends for the 1 MiB text (gzip bytes, one request before the load):")
        L.append("")
        L.append("| scenario | " + " | ".join(DISPLAY[c] for c in contenders) + " |")
        L.append("|---|" + "---:|" * len(contenders))
        for scn in sized:
            cells = []
            for c in contenders:
                n = GZIP_SIZES.get((c, SCENARIOS[scn]["path"]))
                cells.append(f"{n:,} ({ONE_MIB / n:.1f}x)" if n else "not compressed")
            L.append(f"| {scn} | " + " | ".join(cells) + " |")
    if idle:
        n = idle[0]["conns"]
        L.append("")
        why = ""
        if params.get("idle_reduced_from"):
            why = (f" (not {params['idle_reduced_from']:,}: this machine's RLIMIT_NOFILE hard limit is "
                   f"{params['nofile']:,})")
        L.append(f"Memory with {n:,} idle keep-alive client connections{why} "
                 f"(each made one `GET /`, then stays open; RSS read {IDLE_SETTLE_S:.0f} s after the last was set "
                 f"up). plain = HTTP/1.1, tls = HTTP/1.1 over TLS, h2 = HTTP/2 prior knowledge (h2c):")
        L.append("")
        L.append("| contender | connections | RSS before MiB | RSS with conns MiB | KiB per conn | PSS before MiB "
                 "| PSS with conns MiB | conns set up | still open |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in idle:
            kpc = f"{r['kib_per_conn']:.1f}" if r.get("kib_per_conn") is not None else "—"
            L.append(f"| {DISPLAY[r['contender']]} | {r.get('mode', 'plain')} | {fmt(r.get('rss_before_kib'), 'mib')} | "
                     f"{fmt(r.get('rss_with_conns_kib'), 'mib')} | {kpc} | {fmt(r.get('pss_before_kib'), 'mib')} | "
                     f"{fmt(r.get('pss_with_conns_kib'), 'mib')} | {r.get('ok', '—')} | "
                     f"{r.get('alive_at_end', '—')} |")
        closed = [r for r in idle if r.get("ok") and r.get("alive_at_end") is not None and r["alive_at_end"] < r["ok"]]
        for r in closed:
            L.append("")
            L.append(f"Note: {DISPLAY[r['contender']]} closed {r['ok'] - r['alive_at_end']} of the idle "
                     f"{r.get('mode', 'plain')} connections "
                     f"before the end of the test (idle timeout or connection cap): its figures cover fewer connections.")
        for r in idle:
            if r.get("error"):
                L.append("")
                L.append(f"Note: {DISPLAY[r['contender']]} ({r.get('mode', 'plain')}): {r['error']}.")
    hwm = [r for r in runs if r.get("hwm_reset") is False]
    L.append("")
    L.append("CPU = utime+stime of all the contender's processes during the run (nginx: master + worker); "
             "'of which kernel' is the stime part, per request. "
             "Peak RSS = summed VmHWM, " + ("reset before each run." if not hwm else
                                            "NOT resettable here (clear_refs denied): lifetime peak.") +
             " RSS sums count pages shared between processes (nginx master/worker) once per process; "
             "PSS (smaps_rollup) splits them. KiB per conn = RSS growth / connections."
             " The load generator, the two backends and the proxy share the machine's CPUs.")
    if tls_scns:
        def conns(scn):
            return SCENARIOS[scn]["smoke_conns" if params["smoke"] else "conns"]

        def streams(scn):
            return SCENARIOS[scn]["smoke_streams" if params["smoke"] else "streams"]

        versions = {}
        for r in runs:
            for v, n in (r.get("tls_versions") or {}).items():
                versions[v] = versions.get(v, 0) + n
        L.append("")
        notes = ["TLS: each contender has one more listener on 127.0.0.1 with TLS (1.2 and 1.3), ALPN h2 + "
                 "http/1.1 and session resumption on (nginx `ssl_session_cache shared:SSL:10m` + tickets, "
                 "HAProxy defaults, Gatehouse tickets + session cache), a throwaway ECDSA P-256 certificate "
                 f"for `{TLS_HOST}` (leaf + CA chain) made per run with `openssl`, the same plain-HTTP "
                 "backends and pool."]
        if "tls-keepalive" in tls_scns:
            notes.append(f"`tls-keepalive`: `wrk -t1 -c{conns('tls-keepalive')} --latency -H 'Host: {TLS_HOST}' "
                         f"https://127.0.0.1:PORT/` (wrk sends the IP as SNI).")
        if "tls-handshake" in tls_scns:
            vs = ", ".join(f"{v} {n:,}" for v, n in sorted(versions.items())) or "—"
            notes.append(f"`tls-handshake`: req/s is **full TLS handshakes per second**: `bench/tls_handshakes.py "
                         f"--conns {conns('tls-handshake')} --procs {min(2, os.cpu_count() or 1)}` (Python `ssl`, "
                         f"non-blocking) opens a new TCP + TLS connection per request (SNI `{TLS_HOST}`, "
                         f"`GET /` with `Connection: close`) and never offers a session, so no handshake is "
                         f"resumed (checked per run; wrk and h2load do resume when they reconnect). Its p50/p99 "
                         f"include TCP connect and the handshake. The client's own handshake work takes much "
                         f"of the CPUs, so compare CPU µs/req. Negotiated: {vs}.")
        if "tls-h2" in tls_scns:
            notes.append(f"`tls-h2`: `h2load -c{conns('tls-h2')} -m{streams('tls-h2')} -D S "
                         f"https://127.0.0.1:PORT/` (h2 via ALPN, no SNI).")
        L.append(" ".join(notes))
    return "\n".join(L)


INTRO = """# Benchmarks

Gatehouse compared with nginx and HAProxy as HTTP reverse proxies on one machine:
the same two backends, the same load, the same configuration shape.

## What is measured

* Backends: two nginx instances (1 worker each) answering `ok\\n` on `/` and a
  1 MiB file on `/1m`. Every contender proxies to both of them.
* Contenders, configured equivalently: ONE worker (nginx `worker_processes 1`,
  HAProxy `nbthread 1`, Gatehouse `workers = 1`), round-robin over the two backends,
  keep-alive to the backends, no access log. Each listens on its own 127.0.0.1 port
  for HTTP/1.1 and h2c (prior knowledge).
* Scenarios (`wrk -t1 ... --latency`, `h2load`):
  * `h1-c64` — 64 keep-alive connections, `GET /` (plus a direct-to-backend baseline);
  * `h1-c256` — 256 keep-alive connections;
  * `h1-newconn` — `Connection: close`, a new TCP connection per request, 32 at a time;
  * `h1-1MiB` — 16 connections fetching the 1 MiB file;
  * `h2c` — `h2load -c16 -m10`, h2c prior knowledge;
  * `tls-keepalive` — HTTPS keep-alive, 64 connections (`wrk`);
  * `tls-handshake` — full TLS handshakes per second: a new TLS connection per request,
    no session resumption, 16 at a time (`bench/tls_handshakes.py`);
  * `tls-h2` — `h2load -c16 -m10`, h2 over TLS (ALPN).
  TLS listeners: TLS 1.2 + 1.3, session resumption on, a throwaway ECDSA P-256
  certificate for `bench.local` made per run with `openssl`.
* Per run: requests/s, p50 and p99 latency, CPU seconds used by the contender's
  processes (utime+stime from `/proc/PID/stat`), peak RSS (VmHWM). Once per
  contender: RSS with 10,000 idle keep-alive client connections.
* Contenders are alternated (A B C A B C ...) over several rounds; the tables show
  medians over rounds, and Gatehouse/nginx, Gatehouse/HAProxy ratios.
* All traffic is on 127.0.0.1. The load generator shares the CPUs with the proxy
  and the backends, so absolute numbers depend heavily on the machine: compare
  the contenders with each other, not with other machines.

## How to run

```sh
bench/run.sh            # full run (3 rounds x 10 s, ~15 minutes), rewrites the results below
bench/run.sh --smoke    # seconds; prints the table, leaves this file alone
bench/run.sh --rounds 5 --duration 20 --scenarios h1-c64,h2c --contenders gatehouse,nginx
GATEHOUSE_BIN=/path/to/gatehouse bench/run.sh   # skip `cargo build --release -p gatehouse`
```

`bench/run.sh` installs what is missing with apt-get (nginx, haproxy, wrk,
nghttp2-client, openssl), builds Gatehouse, runs `bench/bench.py` and writes the results
section below. Raw results (JSON, tool outputs) go to `bench/results/`
(not committed). See `bench/README.md` for all options.

## Results

"""


def write_docs(path, section):
    block = f"{START_MARK}\n{section}\n{END_MARK}\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if START_MARK in text and END_MARK in text:
            a = text.index(START_MARK)
            b = text.index(END_MARK, a) + len(END_MARK)
            text = text[:a] + block.rstrip("\n") + text[b:]
        else:
            text = text.rstrip("\n") + "\n\n" + block
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        text = INTRO + block
    with open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(description="Benchmark Gatehouse against nginx and HAProxy (loopback only).")
    ap.add_argument("--smoke", action="store_true",
                    help="1 round of 1 s with tiny loads and 200 idle connections; prints the table, "
                         "does not touch docs/benchmarks.md")
    ap.add_argument("--rounds", type=int, help="rounds (default 3, smoke 1)")
    ap.add_argument("--duration", type=int, help="seconds per run (default 10, smoke 1)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma list of: " + ", ".join(SCENARIOS))
    ap.add_argument("--contenders", default="gatehouse,nginx,haproxy",
                    help="comma list of: gatehouse, nginx, haproxy, baseline (another Gatehouse build, for a "
                         "before/after in one run; needs --baseline-bin)")
    ap.add_argument("--baseline-bin", default=os.environ.get("GATEHOUSE_BASELINE_BIN"),
                    help="the baseline contender's binary (env GATEHOUSE_BASELINE_BIN); adds it to --contenders")
    ap.add_argument("--gatehouse-bin", default=os.environ.get("GATEHOUSE_BIN")
                    or os.path.join(ROOT, "target", "release", "gatehouse"))
    ap.add_argument("--no-direct", action="store_true", help="skip the direct-to-backend baseline")
    ap.add_argument("--workers", type=int, default=1,
                    help="workers for each contender (nginx worker_processes, HAProxy nbthread, Gatehouse "
                         "workers; default 1); the backends and the load generator keep one thread each")
    ap.add_argument("--access-log", choices=["off", "file"], default="off",
                    help="the gatehouse contender's access log (the baseline's is always off): 'file' writes "
                         "combined lines to a file in its temp folder, to measure what logging costs")
    ap.add_argument("--idle-conns", type=int, help="idle connections for the memory test (default 10000, "
                                                   "smoke 200, 0 = skip)")
    ap.add_argument("--warmup", type=float, help="seconds of unmeasured load per contender first (default 2, smoke 0)")
    ap.add_argument("--pause", type=float, help="seconds between runs (default 1, smoke 0.2)")
    ap.add_argument("--docs", default=os.path.join(ROOT, "docs", "benchmarks.md"), help="Markdown file to update")
    ap.add_argument("--no-docs", action="store_true", help="do not update the Markdown file")
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"), help="where the raw JSON goes")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, server logs)")
    ap.add_argument("--check-args", action="store_true", help=argparse.SUPPRESS)  # run.sh: validate, then exit
    a = ap.parse_args(argv)
    a.rounds = a.rounds if a.rounds is not None else (1 if a.smoke else 3)
    a.duration = a.duration if a.duration is not None else (1 if a.smoke else 10)
    a.idle_conns = a.idle_conns if a.idle_conns is not None else (200 if a.smoke else 10000)
    a.warmup = a.warmup if a.warmup is not None else (0 if a.smoke else 2)
    a.pause = a.pause if a.pause is not None else (0.2 if a.smoke else 1.0)
    a.gatehouse_bin = os.path.abspath(a.gatehouse_bin)  # servers run with the temp dir as cwd
    a.scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    a.contenders = [c.strip() for c in a.contenders.split(",") if c.strip()]
    if a.baseline_bin:
        a.baseline_bin = os.path.abspath(a.baseline_bin)
        if "baseline" not in a.contenders:
            a.contenders.append("baseline")
    elif "baseline" in a.contenders:
        ap.error("the baseline contender needs --baseline-bin (or GATEHOUSE_BASELINE_BIN)")
    for s in a.scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r}; known: {', '.join(SCENARIOS)}")
    for c in a.contenders:
        if c not in ALL_CONTENDERS:
            ap.error(f"unknown contender {c!r}; known: {', '.join(ALL_CONTENDERS)}")
    if a.rounds < 1 or a.rounds > 100 or a.duration < 1 or a.duration > 600:
        ap.error("--rounds must be 1..100 and --duration 1..600")
    if a.idle_conns < 0 or a.idle_conns > 50000:
        ap.error("--idle-conns must be 0..50000")
    return a


def raise_nofile(want=65536):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for lim in ((want, max(hard, want)), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, lim)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def preflight(a):
    need = ["nginx", "wrk"]
    if "haproxy" in a.contenders:
        need.append("haproxy")
    if "h2c" in a.scenarios or "tls-h2" in a.scenarios:
        need.append("h2load")
    if any(SCENARIOS[s].get("tls") for s in a.scenarios):
        need.append("openssl")  # the throwaway CA and certificate
    missing = [t for t in need if not shutil.which(t)]
    if missing:
        raise SetupError(f"missing tools: {', '.join(missing)} (bench/run.sh installs them with apt-get)")
    if "baseline" in a.contenders and not (os.path.isfile(a.baseline_bin) and os.access(a.baseline_bin, os.X_OK)):
        raise SetupError(f"baseline binary not found or not executable: {a.baseline_bin}")
    if "gatehouse" in a.contenders:
        b = a.gatehouse_bin
        if not (os.path.isfile(b) and os.access(b, os.X_OK)):
            raise SetupError(f"Gatehouse binary not found or not executable: {b}\n"
                             f"Build it with `cargo build --release -p gatehouse`, set GATEHOUSE_BIN, "
                             f"or leave it out with --contenders nginx,haproxy")
    global NOFILE, NGINX_CONNS, HAPROXY_MAXCONN
    NOFILE = raise_nofile()
    # HAProxy reserves 2 fds per connection (client + server side) and will not start
    # when maxconn does not fit; nginx needs ~1 fd per connection but starts closing
    # idle keep-alive connections once fewer than 1/16 of worker_connections are free.
    NGINX_CONNS = min(16384, NOFILE - 200)
    HAPROXY_MAXCONN = min(16384, (NOFILE - 200) // 2)
    fit = min(HAPROXY_MAXCONN - 100, NGINX_CONNS * 15 // 16 - 200)
    if fit < 100:
        raise SetupError(f"RLIMIT_NOFILE is only {NOFILE}: raise `ulimit -n` (ideally to 65536)")
    a.idle_reduced_from = None
    if a.idle_conns > fit:
        a.idle_reduced_from = a.idle_conns
        a.idle_conns = fit
        log(f"bench: warning: RLIMIT_NOFILE hard limit is {NOFILE} (cannot raise it to 65536): "
            f"idle test uses {a.idle_conns} connections instead of {a.idle_reduced_from}")


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.check_args:
        return 0
    global WORKERS
    WORKERS = max(1, a.workers)
    if WORKERS != 1 and not a.no_docs:
        # The docs' intro describes one worker per contender; a run with more is quoted by hand.
        log(f"bench: --workers {WORKERS}: docs/benchmarks.md is left alone (its text describes one worker)")
        a.no_docs = True
    try:
        preflight(a)
    except SetupError as e:
        log(f"bench: error: {e}")
        return 2

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too: a shell starting us in the background sets it to "ignore", and
    # `kill -INT` must still clean up. SIGHUP is left ignored under nohup.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        signal.signal(signal.SIGHUP, on_signal)

    tmp = tempfile.mkdtemp(prefix="gatehouse-bench.")
    os.chmod(tmp, 0o755)  # nginx workers run as `nobody` when we are root: they must reach their files
    runs, idle = [], []
    started = datetime.datetime.now()
    try:
        try:
            (p_b1, p_b2, p_ng1, p_ng2, p_ha1, p_ha2, p_gh, p_ng_tls, p_ha_tls, p_gh_tls,
             p_bl, p_bl_tls) = free_ports(12)
            backends = [p_b1, p_b2]
            log(f"bench: temp dir {tmp}; backends on 127.0.0.1:{p_b1}, 127.0.0.1:{p_b2}")
            tls = None
            tls_scns = [s for s in a.scenarios if SCENARIOS[s].get("tls")]
            if tls_scns:
                tls = make_tls(tmp)
                log(f"bench: TLS: throwaway CA + ECDSA P-256 certificate for {TLS_HOST} in {os.path.dirname(tls['cert'])}")
            else:
                p_ng_tls = p_ha_tls = p_gh_tls = p_bl_tls = None
            b1 = start_backend(1, tmp, p_b1)
            b2 = start_backend(2, tmp, p_b2)
            wait_port(p_b1, b1)
            wait_port(p_b2, b2)
            direct = Target("direct", p_b1, p_b1, None)
            sanity_check(direct, h2=False)
            def start_target(c):
                """Starts contender `c` on its ports and waits until they accept (again for each idle test)."""
                if c == "gatehouse":
                    t = Target(c, p_gh, p_gh, start_gatehouse(tmp, a.gatehouse_bin, p_gh, backends, p_gh_tls, tls,
                                                             access_log=a.access_log),
                               p_gh_tls)
                elif c == "baseline":
                    t = Target(c, p_bl, p_bl, start_gatehouse(tmp, a.baseline_bin, p_bl, backends, p_bl_tls, tls,
                                                              name="baseline"), p_bl_tls)
                elif c == "nginx":
                    t = Target(c, p_ng1, p_ng2, start_nginx_proxy(tmp, p_ng1, p_ng2, backends, p_ng_tls, tls),
                               p_ng_tls)
                else:
                    t = Target(c, p_ha1, p_ha2, start_haproxy(tmp, p_ha1, p_ha2, backends, p_ha_tls, tls),
                               p_ha_tls)
                wait_port(t.h1_port, t.proc)
                if t.h2_port != t.h1_port:
                    wait_port(t.h2_port, t.proc)
                if t.tls_port:
                    wait_port(t.tls_port, t.proc)
                return t

            targets = []
            for c in a.contenders:
                t = start_target(c)
                sanity_check(t, h2="h2c" in a.scenarios)
                for scn in a.scenarios:
                    if SCENARIOS[scn].get("gzip"):
                        GZIP_SIZES[(c, SCENARIOS[scn]["path"])] = gzip_size(t, SCENARIOS[scn]["path"])
                tls_info = ""
                if t.tls_port:
                    version, alpn = tls_check(t, tls, h2="tls-h2" in a.scenarios)
                    tls_info = f", TLS on {t.tls_port} ({version}, ALPN {alpn})"
                log(f"bench: {DISPLAY[c]} ready on 127.0.0.1:{t.h1_port}"
                    + (f" (h2c on {t.h2_port})" if t.h2_port != t.h1_port else " (h1 + h2c)") + tls_info
                    + f", pids {t.pids()}, threads {sum_kib(t.pids(), 'Threads')}")
                targets.append(t)
        except SetupError as e:
            log(f"bench: error: {e}")
            return 2

        if a.warmup > 0:
            for t in targets:
                log(f"bench: warm-up {DISPLAY[t.name]} {a.warmup:.0f}s")
                subprocess.run(["wrk", "-t1", "-c16", f"-d{max(1, int(a.warmup))}s",
                                f"http://127.0.0.1:{t.h1_port}/"], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=a.warmup + 30)
                if t.tls_port:
                    subprocess.run(["wrk", "-t1", "-c16", f"-d{max(1, int(a.warmup))}s", "-H", f"Host: {TLS_HOST}",
                                    f"https://127.0.0.1:{t.tls_port}/"], stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=a.warmup + 30)

        with_direct = not a.no_direct and "h1-c64" in a.scenarios
        total = a.rounds * (len(a.scenarios) * len(targets) + (1 if with_direct else 0))
        n = 0
        dead = set()
        for rnd in range(1, a.rounds + 1):
            for scn in a.scenarios:
                order = targets + ([direct] if with_direct and scn == "h1-c64" else [])
                for t in order:
                    n += 1
                    if t.name in dead:
                        runs.append({"round": rnd, "scenario": scn, "contender": t.name,
                                     "error": f"{t.name} is no longer running"})
                        continue
                    r = run_one(t, scn, a.duration, a.smoke, tmp)
                    r["round"] = rnd
                    runs.append(r)
                    msg = (f"[{n}/{total}] round {rnd} {scn:<13} {DISPLAY[t.name]:<17} "
                           f"{fmt(r.get('rps'), 'rps'):>9} req/s  p50 {fmt(r.get('p50_ms'), 'ms')} ms  "
                           f"p99 {fmt(r.get('p99_ms'), 'ms')} ms  cpu {fmt(r.get('cpu_s'), 's')} s  "
                           f"errors {r.get('errors')}")
                    if "error" in r:
                        msg += f"  FAILED: {r['error']}\n{r.get('output', '')[-800:]}"
                    log(msg)
                    if t.proc is not None and not t.proc.alive():
                        dead.add(t.name)
                        log(f"bench: {t.name} exited (status {t.proc.popen.returncode}); log tail:\n"
                            f"{t.proc.log_tail()}")
                    time.sleep(a.pause)

        if a.idle_conns:
            # Each idle test on a fresh process: one that has held the previous test's connections keeps their
            # freed memory, and the next test's connections fill it without growing RSS (nginx's h2 figure came
            # out 0.0 KiB per connection that way).
            for t in targets:
                t.proc.stop()
            for mode in ("plain", "tls", "h2"):
                for name in [t.name for t in targets]:
                    if name in dead or (mode == "tls" and not tls):
                        continue
                    try:
                        t = start_target(name)
                    except SetupError as e:
                        idle.append({"contender": name, "mode": mode, "error": str(e)})
                        continue
                    log(f"bench: idle test {DISPLAY[t.name]}: {a.idle_conns} {mode} connections")
                    r = idle_test(t, a.idle_conns, mode)
                    t.proc.stop()
                    idle.append(r)
                    log(f"bench:   RSS {fmt(r.get('rss_before_kib'), 'mib')} -> "
                        f"{fmt(r.get('rss_with_conns_kib'), 'mib')} MiB, ok {r.get('ok')}, still open "
                        f"{r.get('alive_at_end')}" + (f"  FAILED: {r['error']}" if "error" in r else ""))
                    time.sleep(a.pause)

        names = [t.name for t in targets]
        summ = summarize(runs, a.scenarios, names + ["direct"])
        info = machine_info(a.gatehouse_bin, a.contenders)
        params = {"smoke": a.smoke, "rounds": a.rounds, "duration": a.duration,
                  "scenarios": a.scenarios, "contenders": names, "idle_conns": a.idle_conns,
                  "idle_reduced_from": a.idle_reduced_from, "nofile": NOFILE,
                  "nginx_worker_connections": NGINX_CONNS, "haproxy_maxconn": HAPROXY_MAXCONN,
                  "workers": WORKERS}
        section = render(summ, idle, a.scenarios, names, with_direct, info, params, runs)
        failed = [r for r in runs if "error" in r] + [r for r in idle if "error" in r]

        os.makedirs(a.results_dir, exist_ok=True)
        stamp = started.strftime("%Y%m%d-%H%M%S") + ("-smoke" if a.smoke else "")
        out_json = os.path.join(a.results_dir, f"{stamp}.json")
        with open(out_json, "w") as f:
            json.dump({"info": info, "params": params, "runs": runs, "idle": idle,
                       "summary": [dict(scenario=k[0], contender=k[1], **v) for k, v in summ.items()]},
                      f, indent=1)

        print(section)
        print()
        print(f"Raw results: {out_json}")
        if a.smoke or a.no_docs:
            pass
        elif failed:
            log(f"bench: {len(failed)} run(s) failed: {a.docs} NOT updated")
        else:
            write_docs(a.docs, section)
            print(f"Updated {a.docs}")
        return 1 if failed else 0
    except KeyboardInterrupt as e:
        log(f"bench: interrupted ({e or 'Ctrl-C'}), cleaning up")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not abort the cleanup
        stop_all()
        if a.keep_tmp:
            log(f"bench: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
