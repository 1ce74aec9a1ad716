"""The printed table and the derived figures (ratios, fractions of the ceiling, goals)."""

from __future__ import annotations

from typing import Any

from .stats import ratio, rounded


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "-"
    status = entry.get("status")
    if status == "unavailable":
        return "unavailable"
    if entry.get("rate") is None:
        return "-"
    text = f"{entry['rate']:.1f} ({_ms(entry.get('p50_ms'))}/{_ms(entry.get('p99_ms'))})"
    if entry.get("stalled_runs"):
        text += f" stalled {entry['stalled_runs']}/{entry['runs']}"
    return text


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def fraction_of_ceiling(leg: dict[str, Any], contender: str, ceiling: dict[str, Any] | None) -> dict[str, Any]:
    """Throughput over the crypto ceiling, per concurrency; the headline is c8."""
    if not ceiling:
        return {"fraction_of_ceiling": None}
    by_c = {}
    for key, entry in leg.items():
        if key.startswith("c") and key[1:].isdigit():
            by_c[key] = rounded(ratio(entry.get(contender, {}).get("rate"), ceiling["rate_all_cores"]), 4)
    rate8 = leg.get("c8", {}).get(contender, {}).get("rate")
    return {
        "fraction_of_ceiling": rounded(ratio(rate8, ceiling["rate_all_cores"]), 4),
        "fraction_of_ceiling_one_core": rounded(ratio(rate8, ceiling["rate_one_core"]), 4),
        "fraction_of_ceiling_by_concurrency": by_c,
    }


def goals(result: dict[str, Any]) -> dict[str, Any]:
    acme, scep = result.get("acme") or {}, result.get("scep") or {}
    c8 = acme.get("c8", {})
    ok = lambda v, limit: None if v is None else v >= limit
    p99 = c8.get("p99_ratio_vs_pebble")
    mem = result.get("memory") or {}
    return {
        "acme_c8_at_least_pebble": ok(c8.get("ratio_vs_pebble"), 1.0),
        "acme_c8_p99_no_worse_than_pebble": None if p99 is None else p99 <= 1.0,
        "scep_c8_at_least_scepserver": ok(scep.get("c8", {}).get("ratio_vs_scepserver"), 1.0),
        "acme_half_of_ceiling": ok(acme.get("fraction_of_ceiling"), 0.5),
        "scep_half_of_ceiling": ok(scep.get("fraction_of_ceiling"), 0.5),
        "memory_growth_bytes_per_issuance": mem.get("growth_bytes_per_issuance"),
        "est_quarter_of_ceiling": ok((result.get("est") or {}).get("fraction_of_ceiling_c8"), 0.25),
    }


def render(result: dict[str, Any]) -> str:
    out: list[str] = []
    meta = result.get("meta", {})
    out.append(f"enrollment gateway benchmark ({meta.get('mode')} mode, {meta.get('cpus')} CPUs, "
               f"{meta.get('duration_s', 0):.0f}s)")
    acme = result.get("acme")
    if acme:
        if acme.get("status") == "unavailable":
            out.append(f"\nACME: unavailable: {acme.get('reason')}")
        else:
            out.append("\nACME, full RFC 8555 flow per certificate: certificates/s, median of alternating runs "
                       "(p50/p99 latency ms)")
            cs = [k for k in acme if k.startswith("c") and k[1:].isdigit()]
            rows = [["", *cs]]
            names = [("pebble", f"pebble {acme.get('pebble_version') or ''}".strip()),
                     ("gateway_sqlite", "gateway, SQLite"), ("gateway_postgresql", "gateway, PostgreSQL")]
            for key, label in names:
                rows.append([label, *[_cell(acme[c].get(key)) for c in cs]])
            rows.append(["ratio vs pebble (SQLite)", *[_num(acme[c].get("ratio_vs_pebble")) for c in cs]])
            rows.append(["ratio vs pebble (PostgreSQL)", *[_num(acme[c].get("ratio_vs_pebble_postgresql")) for c in cs]])
            rows.append(["server CPU ms/cert pebble", *[_num(acme[c].get("pebble", {}).get("server_cpu_ms_per_cert"), 1) for c in cs]])
            rows.append(["server CPU ms/cert gateway", *[_num(acme[c].get("gateway_sqlite", {}).get("server_cpu_ms_per_cert"), 1) for c in cs]])
            rows.append(["load generator CPU ms/cert", *[_num(acme[c].get("pebble", {}).get("client_cpu_ms_per_cert"), 1) for c in cs]])
            out.append(_table(rows))
            for key, label in names:
                reason = acme[cs[0]].get(key, {}).get("reason") if cs else None
                if reason:
                    out.append(f"  {label}: unavailable: {reason}")
            out.append(f"  CA keys: pebble {acme[cs[0]].get('pebble', {}).get('ca_key') if cs else '-'}, "
                       f"gateway {acme.get('gateway_ca_key') or '-'}; JWS per certificate: gateway "
                       f"{_num(acme.get('gateway_jws_per_cert'), 1)}, pebble {_num(acme.get('pebble_jws_per_cert'), 1)}")
    scep = result.get("scep")
    if scep:
        if scep.get("status") == "unavailable":
            out.append(f"\nSCEP: unavailable: {scep.get('reason')}")
        else:
            out.append("\nSCEP PKCSReq (RSA-2048 device key, AES-128-CBC): correct unique-serial enrollments/s "
                       "(p50/p99 ms)")
            cs = [k for k in scep if k.startswith("c") and k[1:].isdigit()]
            rows = [["", *cs]]
            rows.append([f"scepserver {scep.get('scepserver_version') or ''}".strip(),
                         *[_cell(scep[c].get("scepserver")) for c in cs]])
            rows.append(["  scepserver raw responses/s", *[_num(scep[c].get("scepserver", {}).get("raw_rate"), 1) for c in cs]])
            rows.append(["  scepserver duplicate serials", *[str(scep[c].get("scepserver", {}).get("duplicate_serial", "-")) for c in cs]])
            rows.append(["gateway, SQLite", *[_cell(scep[c].get("gateway")) for c in cs]])
            rows.append(["ratio vs scepserver", *[_num(scep[c].get("ratio_vs_scepserver")) for c in cs]])
            rows.append(["ratio vs scepserver raw", *[_num(scep[c].get("ratio_vs_scepserver_raw")) for c in cs]])
            rows.append(["server CPU ms/cert scepserver", *[_num(scep[c].get("scepserver", {}).get("server_cpu_ms_per_cert"), 1) for c in cs]])
            rows.append(["server CPU ms/cert gateway", *[_num(scep[c].get("gateway", {}).get("server_cpu_ms_per_cert"), 1) for c in cs]])
            out.append(_table(rows))
            reason = scep.get(cs[0], {}).get("gateway", {}).get("reason") if cs else None
            if reason:
                out.append(f"  gateway: unavailable: {reason}")
            out.append(f"  keys: scepserver {scep.get('scepserver_keys')}, gateway {scep.get('gateway_keys')}")
    ceiling = result.get("ceiling") or {}
    if ceiling:
        out.append("\nCrypto ceiling (key operations of one enrollment only, same run)")
        for proto in ("acme", "scep"):
            c = ceiling.get(proto)
            if not c:
                continue
            ops = ", ".join(f"{o['count']}x {o['operation']} {o['key']} ({o['purpose']})"
                            for o in c["operations_per_enrollment"])
            frac = (result.get(proto) or {}).get("fraction_of_ceiling")
            out.append(f"  {proto.upper()}: {c['rate_all_cores']:.0f}/s on {c['processes']} cores "
                       f"({c['rate_one_core']:.0f}/s on one) for {ops}; gateway c8 = "
                       f"{'-' if frac is None else f'{frac * 100:.1f}%'} of it")
    est = result.get("est")
    if est:
        from .est_leg import render as render_est

        out.extend(render_est(est))
    replicas = result.get("replicas")
    if replicas:
        from .replicas_leg import render as render_replicas

        out.extend(render_replicas(replicas))
    hsm = result.get("hsm")
    if hsm:
        from .hsm_leg import render as render_hsm

        out.extend(render_hsm(hsm))
    mem = result.get("memory")
    if mem:
        if mem.get("status") == "unavailable":
            out.append(f"\nMemory: unavailable: {mem.get('reason')}")
        else:
            pts = ", ".join(f"{p['issued']}: {(p['rss_bytes'] or 0) / 2**20:.1f} MiB" for p in mem["checkpoints"])
            out.append(f"\nMemory (gateway RSS after N ACME issuances, SQLite): {pts}; peak "
                       f"{(mem.get('peak_rss_bytes') or 0) / 2**20:.1f} MiB; growth "
                       f"{_num(mem.get('growth_bytes_per_issuance'), 0)} bytes/issuance from "
                       f"{mem.get('growth_from_issued')} on ({mem.get('status')})")
    g = result.get("goals")
    if g:
        out.append("\nGoals: " + ", ".join(f"{k}={v}" for k, v in g.items()))
    return "\n".join(out)
