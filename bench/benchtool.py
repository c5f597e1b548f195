#!/usr/bin/env python3
"""Helper for bench/run: parses tool output, records raw numbers, builds the report.

bench/run (bash) drives the processes; everything that is easier in Python than in
bash lives here, so the script does not depend on jq:

  benchtool.py record RAW --scenario S --round N --target T --test X
               [--parse wrk:FILE | h2load:FILE | json:FILE] [key=value ...]
      Parses one load run, derives CPU per request, appends one JSON line to RAW and
      prints a one-line progress summary.
  benchtool.py report RAW META OUT_JSON OUT_TXT
      Medians over rounds per scenario/target/test, cutover/nginx ratios, plain-text
      tables on stdout (and in OUT_TXT), and the full JSON (medians + every raw round).
"""

import json
import re
import statistics
import sys

# --------------------------------------------------------------------------- parsing

_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def to_us(text):
    """wrk prints 456.00us / 1.23ms / 1.20s / 1.00m: normalise to microseconds."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unknown latency {text!r}")
    return float(m.group(1)) * _UNITS_US[m.group(2)]


def parse_wrk(text):
    out = {}
    m = re.search(r"Requests/sec:\s*([0-9.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in ([0-9.]+\w+)", text)
    if m:
        out["requests"] = int(m.group(1))
    dist = text.split("Latency Distribution", 1)
    if len(dist) == 2:
        for pct, val in re.findall(r"^\s*(50|75|90|99)%\s+(\S+)", dist[1], re.M):
            out[f"p{pct}_us"] = to_us(val)
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    out["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        c, r, w, t = map(int, m.groups())
        out.update(sock_connect=c, sock_read=r, sock_write=w, sock_timeout=t)
        out["socket_errors"] = c + r + w + t
    else:
        out["socket_errors"] = 0
    out["errors"] = out["non2xx"] + out["socket_errors"]
    # bench/tlsprobe.c, when preloaded into wrk: the TLS connections it closed and how
    # many of their handshakes were resumptions.
    m = re.search(r"^tlsprobe: (\d+) TLS connections closed, (\d+) resumed", text, re.M)
    if m:
        out["tls_closed"], out["tls_resumed"] = int(m.group(1)), int(m.group(2))
        if out["tls_closed"]:
            out["resumed_pct"] = 100.0 * out["tls_resumed"] / out["tls_closed"]
    return out


def parse_h2load(text):
    out = {}
    m = re.search(r"finished in ([0-9.]+)(\w+), ([0-9.]+) req/s", text)
    if m:
        out["rps"] = float(m.group(3))
    m = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    if m:
        total, started, done, ok, failed, errored, timeout = map(int, m.groups())
        out.update(total=total, done=done, succeeded=ok, failed=failed, errored=errored, timeout=timeout)
        out["requests"] = done
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if m:
        s2, s3, s4, s5 = map(int, m.groups())
        out["non2xx"] = s3 + s4 + s5
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text)
    if m:
        out["mean_us"] = to_us(m.group(3))
        out["max_us"] = to_us(m.group(2))
    out["errors"] = out.get("failed", 0) + out.get("errored", 0) + out.get("timeout", 0) + out.get("non2xx", 0)
    if "done" in out and out["done"]:
        out["succeeded_pct"] = 100.0 * out["succeeded"] / out["done"]
    return out


def parse_json(text):
    """loadgen prints one JSON object (on the last non-empty line)."""
    lines = [l for l in text.splitlines() if l.strip().startswith("{")]
    if not lines:
        return {}
    return json.loads(lines[-1])


PARSERS = {"wrk": parse_wrk, "h2load": parse_h2load, "json": parse_json}


def num(v):
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v else f


def cmd_record(args):
    raw = args[0]
    rec = {"metrics": {}}
    i = 1
    while i < len(args):
        a = args[i]
        if a in ("--scenario", "--target", "--test"):
            rec[a[2:]] = args[i + 1]
            i += 2
        elif a == "--round":
            rec["round"] = int(args[i + 1])
            i += 2
        elif a == "--parse":
            kind, path = args[i + 1].split(":", 1)
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
            try:
                parsed = PARSERS[kind](text)
            except Exception as e:  # a broken tool output is recorded, not fatal
                parsed = {"parse_error": str(e)}
            if not parsed.get("requests") and kind != "json":
                rec.setdefault("problems", []).append(f"could not parse {kind} output {path}")
            rec["metrics"].update(parsed)
            i += 2
        else:
            k, v = a.split("=", 1)
            rec["metrics"][k] = num(v)
            i += 1
    m = rec["metrics"]
    # loadgen's "errors" counts failed requests; its "requests" counts only the good ones.
    if "cpu_ticks" in m and "clk_tck" in m:
        cpu_s = m["cpu_ticks"] / m["clk_tck"]
        m["cpu_s"] = cpu_s
        if m.get("requests"):
            m["cpu_us_per_req"] = cpu_s * 1e6 / m["requests"]
            for k in ("user", "sys"):
                if f"{k}_ticks" in m:
                    m[f"{k}_us_per_req"] = m[f"{k}_ticks"] / m["clk_tck"] * 1e6 / m["requests"]
            if "sleeps" in m:
                m["sleeps_per_kreq"] = 1000.0 * m["sleeps"] / m["requests"]
        if m.get("wall_s"):
            m["cpu_util_pct"] = 100.0 * cpu_s / m["wall_s"]
            if "other_ticks" in m:
                m["other_cpu_pct"] = max(0.0, 100.0 * m["other_ticks"] / m["clk_tck"] / m["wall_s"])
    # How busy each CPU was during the test, in % of that CPU.
    if m.get("wall_s") and m.get("clk_tck"):
        for k in [k for k in m if re.fullmatch(r"cpu\d+_busy_ticks", k)]:
            m[k.replace("_ticks", "_pct")] = min(100.0, 100.0 * m[k] / m["clk_tck"] / m["wall_s"])
    for k in ("hwm_kb", "rss_before_kb", "rss_with_kb"):
        if k in m and isinstance(m[k], (int, float)):
            m[k.replace("_kb", "_mib")] = m[k] / 1024.0
    if "rss_before_kb" in m and "rss_with_kb" in m and m.get("conns"):
        m["kib_per_conn"] = (m["rss_with_kb"] - m["rss_before_kb"]) / m["conns"]
    if "log_lines" in m and m.get("requests"):
        m["log_lines_pct"] = 100.0 * m["log_lines"] / m["requests"]
    with open(raw, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    # One progress line so a long run shows where it is.
    show = []
    for k, fmt in (
        ("rps", "{:.0f} req/s"),
        ("p50_us", "p50 {:.0f}us"),
        ("p99_us", "p99 {:.0f}us"),
        ("mean_us", "mean {:.0f}us"),
        ("cpu_us_per_req", "cpu {:.1f}us/req"),
        ("user_us_per_req", "user {:.1f}us"),
        ("sys_us_per_req", "sys {:.1f}us"),
        ("sleeps_per_kreq", "sleeps {:.0f}/kreq"),
        ("cpu_util_pct", "busy {:.0f}%"),
        ("errors", "errors {}"),
        ("other_cpu_pct", "other load on proxy CPU {:.0f}%"),
        ("cpu1_busy_pct", "CPU 1 busy {:.0f}%"),
        ("hwm_mib", "HWM {:.1f}MiB"),
        ("split_b_pct", "pool b {:.0f}%"),
        ("resumed_pct", "TLS resumed {:.1f}%"),
        ("tls13", "TLS 1.3 {}"),
        ("tls12", "TLS 1.2 {}"),
        ("alpn_h2", "ALPN h2 {}"),
        ("resumes", "s_client resumes {}"),
        ("rss_before_mib", "RSS before {:.1f}MiB"),
        ("rss_with_mib", "RSS holding {:.1f}MiB"),
        ("kib_per_conn", "{:.2f}KiB/conn"),
        ("log_lines_pct", "log lines {:.1f}% of requests"),
    ):
        if isinstance(m.get(k), (int, float)):
            show.append(fmt.format(m[k]))
    for p in rec.get("problems", []):
        show.append("PROBLEM: " + p)
    print(f"    {rec.get('target', '?'):8s} {rec.get('test', '?'):6s} " + ", ".join(show), flush=True)


# --------------------------------------------------------------------------- report

# Rows per scenario: (label, test, metric, better). better: "higher", "lower", "" (neither,
# ratio still shown) or None (a ratio would mean nothing: not shown).
def scenario_rows(knobs):
    rate = knobs.get("FIXED_RATE", "?")
    c = knobs.get("CONNS", "64")
    wrk64 = [
        (f"requests/s, {c} conns", "wrk64", "rps", "higher"),
        (f"p50 latency, {c} conns (us)", "wrk64", "p50_us", "lower"),
        (f"p99 latency, {c} conns (us)", "wrk64", "p99_us", "lower"),
        (f"CPU per request, {c} conns (us)", "wrk64", "cpu_us_per_req", "lower"),
        ("  of which user (us)", "wrk64", "user_us_per_req", ""),
        ("  of which system (us)", "wrk64", "sys_us_per_req", ""),
        ("  proxy sleeps per 1000 requests", "wrk64", "sleeps_per_kreq", None),
        (f"proxy CPU busy, {c} conns (% of a core)", "wrk64", "cpu_util_pct", ""),
    ]
    hwm = [("peak RSS, VmHWM (MiB)", "proc", "hwm_mib", "lower")]
    tc = knobs.get("TLS_NEW_CONNS", "16")
    tls_checks = [
        ("TLS 1.3 by default, sanity (1 = yes)", "proc", "tls13", None),
        ("TLS 1.2 client served, sanity (1 = yes)", "proc", "tls12", None),
        ("h2 by ALPN, sanity (1 = yes)", "proc", "alpn_h2", None),
        ("resumes a session, s_client (1 = yes)", "proc", "resumes", None),
    ]

    def tls_new(test, what):
        return [
            (f"{what}: requests/s, {tc} conns", test, "rps", "higher"),
            (f"{what}: p50 latency (us)", test, "p50_us", "lower"),
            (f"{what}: p99 latency (us)", test, "p99_us", "lower"),
            (f"{what}: CPU per request (us)", test, "cpu_us_per_req", "lower"),
            ("  of which user (us)", test, "user_us_per_req", ""),
            ("  of which system (us)", test, "sys_us_per_req", ""),
            (f"{what}: proxy CPU busy (% of a core)", test, "cpu_util_pct", ""),
            (f"{what}: handshakes resumed (%)", test, "resumed_pct", None),
        ]

    rows = {
        "basic": wrk64
        + [
            (f"p50 at {rate} req/s, 16 conns (us)", "rate", "p50_us", "lower"),
            (f"p99 at {rate} req/s, 16 conns (us)", "rate", "p99_us", "lower"),
            (f"p99.9 at {rate} req/s, 16 conns (us)", "rate", "p999_us", "lower"),
            (f"CPU per request at {rate} req/s (us)", "rate", "cpu_us_per_req", "lower"),
            ("p50 latency, 1 conn (us)", "wrk1", "p50_us", "lower"),
            ("p99 latency, 1 conn (us)", "wrk1", "p99_us", "lower"),
            ("p50 added over direct, 1 conn (us)", "wrk1", "added_p50_us", "lower"),
            ("p99 added over direct, 1 conn (us)", "wrk1", "added_p99_us", "lower"),
            ("CPU per request, 1 conn (us)", "wrk1", "cpu_us_per_req", "lower"),
            ("share sent to pool b, sanity (%)", "proc", "split_b_pct", None),
        ]
        + hwm,
        "accesslog": wrk64 + [("access log lines / requests (%)", "wrk64", "log_lines_pct", None)] + hwm,
        "autopilot": wrk64 + [("share sent to pool b, sanity (%)", "proc", "split_b_pct", None)] + hwm,
        "close": [
            ("requests/s, new conn per request", "wrk64", "rps", "higher"),
            ("p50 latency (us)", "wrk64", "p50_us", "lower"),
            ("p99 latency (us)", "wrk64", "p99_us", "lower"),
            ("CPU per request (us)", "wrk64", "cpu_us_per_req", "lower"),
            ("proxy CPU busy (% of a core)", "wrk64", "cpu_util_pct", ""),
        ]
        + hwm,
        "1mib": [
            ("responses/s (= MiB/s), 16 conns", "wrk16", "rps", "higher"),
            ("p50 latency (us)", "wrk16", "p50_us", "lower"),
            ("p99 latency (us)", "wrk16", "p99_us", "lower"),
            ("CPU per response (us)", "wrk16", "cpu_us_per_req", "lower"),
            ("proxy CPU busy (% of a core)", "wrk16", "cpu_util_pct", ""),
        ]
        + hwm,
        "2cpu": wrk64 + hwm,
        "h2": [
            ("requests/s, h2load 64 conns x 10 streams", "h2", "rps", "higher"),
            ("mean latency (us)", "h2", "mean_us", "lower"),
            ("max latency (us)", "h2", "max_us", "lower"),
            ("CPU per request (us)", "h2", "cpu_us_per_req", "lower"),
            ("proxy CPU busy (% of a core)", "h2", "cpu_util_pct", ""),
            ("succeeded (% of done)", "h2", "succeeded_pct", None),
        ]
        + hwm,
        "idle": [
            ("RSS before (MiB)", "idle", "rss_before_mib", "lower"),
            ("RSS holding the idle conns (MiB)", "idle", "rss_with_mib", "lower"),
            ("RSS per idle connection (KiB)", "idle", "kib_per_conn", "lower"),
            ("connections held with a 200", "idle", "ok", "higher"),
        ],
        "tls": wrk64 + tls_checks + hwm,
        "tlsnew": tls_new("full", "full handshake") + tls_new("resumed", "resumed") + tls_checks + hwm,
    }
    # After each "proxy CPU busy" row: how busy the proxy's CPU was with anything else.
    for name, rs in rows.items():
        out = []
        for r in rs:
            out.append(r)
            if r[2] == "cpu_util_pct":
                out.append(("  other load on proxy CPU 0 (%)", r[1], "other_cpu_pct", None))
                if name != "2cpu":
                    out.append(("  load-side CPU 1 busy (%)", r[1], "cpu1_busy_pct", None))
        rows[name] = out
    return rows


DESCRIPTIONS = {
    "basic": "keep-alive clients, tiny bodies, 90/10 split, proxy on CPU 0, load+upstream on CPU 1",
    "accesslog": "as basic (wrk 64 conns) with the access log written to a file",
    "autopilot": "as basic (wrk 64 conns) with the route's autopilot running, held at its 10 % step",
    "close": "a new TCP connection per request (wrk -H 'Connection: close')",
    "1mib": "1 MiB responses (/1m), wrk 16 conns",
    "2cpu": "proxy with 2 workers on CPUs 0,1; load generator UNPINNED and upstream on CPU 1, so they share CPUs with the proxy",
    "h2": "HTTP/2 prior-knowledge clients (h2load -c64 -m10) to the proxy; HTTP/1.1 to the upstream",
    "idle": "idle keep-alive client connections held open; RSS of the proxy (nginx: its worker)",
    "tls": "HTTPS keep-alive clients (wrk 64 conns, TLS 1.3, ECDSA P-256 certificate), HTTP/1.1 to the upstream",
    "tlsnew": "a new TLS connection per request (wrk -H 'Connection: close' over https): every handshake full, then every one resumed",
}

TARGETS = ["direct", "nginx", "cutover"]


def median(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return f"{v:,}"


def add_derived(recs):
    """Added latency over direct, per round (the pairing cancels slow drift between rounds)."""
    direct = {
        (r["scenario"], r["round"]): r["metrics"]
        for r in recs
        if r.get("target") == "direct" and r.get("test") == "wrk1"
    }
    for r in recs:
        if r.get("test") != "wrk1" or r.get("target") == "direct":
            continue
        d = direct.get((r["scenario"], r["round"]))
        if not d:
            continue
        for p in ("p50_us", "p99_us"):
            if isinstance(r["metrics"].get(p), (int, float)) and isinstance(d.get(p), (int, float)):
                r["metrics"]["added_" + p] = r["metrics"][p] - d[p]


def cmd_report(args):
    raw_path, meta_path, out_json, out_txt = args
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    recs = []
    with open(raw_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                recs.append(json.loads(line))
    add_derived(recs)
    knobs = meta.get("knobs", {})
    rows_by = scenario_rows(knobs)
    lines = []
    scen_out = {}
    order = [s for s in rows_by if any(r.get("scenario") == s for r in recs)]
    warnings = list(meta.get("warnings", []))
    for scen in order:
        srecs = [r for r in recs if r.get("scenario") == scen]
        targets = [t for t in TARGETS if any(r.get("target") == t for r in srecs)]
        medians = {t: {} for t in targets}
        for t in targets:
            tests = sorted({r["test"] for r in srecs if r["target"] == t})
            for test in tests:
                ms = [r["metrics"] for r in srecs if r["target"] == t and r["test"] == test]
                keys = sorted({k for m in ms for k in m})
                medians[t][test] = {k: median([m.get(k) for m in ms]) for k in keys}
                medians[t][test] = {k: v for k, v in medians[t][test].items() if v is not None}
        errors = {t: sum(r["metrics"].get("errors", 0) or 0 for r in srecs if r["target"] == t) for t in targets}
        for r in srecs:
            e = r["metrics"].get("errors", 0) or 0
            if e:
                warnings.append(
                    f"{scen}: {r['target']} {r['test']} round {r['round']}: {e} errors "
                    f"(non-2xx {r['metrics'].get('non2xx', '-')}, socket {r['metrics'].get('socket_errors', '-')})"
                )
            for p in r.get("problems", []):
                warnings.append(f"{scen}: {r['target']} {r['test']} round {r['round']}: {p}")
        rounds = sorted({r["round"] for r in srecs})
        # Table.
        show_direct = "direct" in targets
        header = ["metric"] + (["direct"] if show_direct else []) + ["nginx", "cutover", "cutover/nginx", "better"]
        table = []
        ratios = {}
        for label, test, metric, better in rows_by[scen]:
            vals = {t: medians.get(t, {}).get(test, {}).get(metric) for t in TARGETS}
            if all(vals[t] is None for t in ("nginx", "cutover")):
                continue
            ratio = None
            if (
                better is not None
                and isinstance(vals["nginx"], (int, float))
                and isinstance(vals["cutover"], (int, float))
                and vals["nginx"]
            ):
                ratio = vals["cutover"] / vals["nginx"]
            ratios[f"{test}.{metric}"] = ratio
            row = [label] + ([fmt(vals["direct"])] if show_direct else []) + [
                fmt(vals["nginx"]),
                fmt(vals["cutover"]),
                f"{ratio:.2f}x" if ratio is not None else "-",
                better or "",
            ]
            table.append(row)
        table.append(
            ["errors, all tests+rounds (sum)"]
            + ([fmt(errors.get("direct"))] if show_direct else [])
            + [fmt(errors.get("nginx")), fmt(errors.get("cutover")), "-", "lower"]
        )
        widths = [max(len(str(r[i])) for r in [header] + table) for i in range(len(header))]
        lines.append("")
        lines.append(f"== {scen}: {DESCRIPTIONS.get(scen, '')}")
        lines.append(f"   median of {len(rounds)} round(s)")
        sep = "-+-".join("-" * w for w in widths)
        lines.append(" | ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
        lines.append(sep)
        for row in table:
            lines.append(" | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        scen_out[scen] = {
            "description": DESCRIPTIONS.get(scen, ""),
            "rounds": len(rounds),
            "medians": medians,
            "ratios_cutover_over_nginx": ratios,
            "errors_sum": errors,
            "raw": srecs,
        }
    notes = meta.get("notes", [])
    if notes:
        lines.append("")
        lines.append("Notes:")
        lines.extend("  - " + n for n in notes)
    lines.append("")
    if warnings:
        lines.append("WARNINGS (errors, crashes, anything not clean):")
        lines.extend("  ! " + w for w in warnings)
    else:
        lines.append("No errors, non-2xx responses or crashes in any run.")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(out_txt, "w", encoding="utf-8") as f:
        f.write(text)
    out = dict(meta)
    out["warnings"] = warnings
    out["scenarios"] = scen_out
    with open(out_json, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, sort_keys=False)
        f.write("\n")


def cmd_meta(args):
    """meta OUT key=value... ; values starting with @ are read from a file; notes+=, warnings+= append."""
    out = args[0]
    try:
        with open(out, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        meta = {}
    for a in args[1:]:
        k, v = a.split("=", 1)
        if v.startswith("@"):
            with open(v[1:], encoding="utf-8", errors="replace") as f:
                v = f.read().strip()
        if k.endswith("+"):
            meta.setdefault(k[:-1], []).append(v)
        elif "." in k:
            a_, b_ = k.split(".", 1)
            meta.setdefault(a_, {})[b_] = v
        else:
            meta[k] = v
    with open(out, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    {"record": cmd_record, "report": cmd_report, "meta": cmd_meta}[cmd](args)


if __name__ == "__main__":
    main()
