#!/usr/bin/env python3
"""Validate the guardrail evaluation set and print counts.

    python3 check.py [path/to/eval.jsonl]     (default: eval.jsonl next to this file)

Exit status 0 when the file is consistent and meets the size targets, 1 otherwise.
Standard library only; deliberately independent of generate.py (it re-implements the checks).

Checks
  * every line is a JSON object with id (unique), text, labels, lang (+ optional note);
  * every label has a known type; `value` occurs verbatim in `text` (injection: value null);
  * card labels pass Luhn (13-19 digits, spaces/dashes only); iban labels pass mod-97 and have the
    registered length for their country; ssn labels respect the area/group/serial rules; ip labels
    parse as IPv4/IPv6; email labels look like addresses; secret labels match a known key shape
    (JWT headers decode to JSON with "alg");
  * `card-neg-*` texts contain no Luhn-valid 13-19 digit run; `iban-neg-*` texts contain no
    IBAN-shaped string with a valid checksum; `ssn-neg-*` no valid SSN;
  * consistency across the whole file: no *unlabelled* Luhn-valid digit run, valid IBAN, valid SSN,
    e-mail address, IPv4/IPv6 address or well-known key shape outside the labelled spans (so a
    detector is never penalised for finding something real that the labels forgot);
  * size targets from the brief (positives / hard negatives per type, languages, countries).
"""
import base64
import ipaddress
import json
import os
import re
import sys
from collections import Counter, defaultdict

TYPES = ["card", "iban", "email", "phone", "ssn", "ip", "dob", "address", "secret", "injection"]
TARGETS = {  # minimum positives (documents containing the type), minimum hard negatives
    "card": (60, 40), "iban": (60, 40), "email": (60, 40), "secret": (60, 40),
    "phone": (30, 20), "ip": (30, 20), "ssn": (30, 20), "dob": (30, 20), "address": (30, 20),
    "injection": (60, 60),
}
IBAN_LEN = {"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
            "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
            "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
            "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
            "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
            "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
            "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
            "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
            "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20}
COMMON_TLDS = {"com", "org", "net", "edu", "gov", "io", "dev", "app", "info", "biz", "travel", "museum",
               "email", "online", "shop", "tech", "cloud", "social", "zip", "mov", "xyz", "me", "ai"}
SECRET_SHAPES = [
    re.compile(r"sk-ant-api03-[A-Za-z0-9_-]{80,}AA"),
    re.compile(r"sk-proj-[A-Za-z0-9_-]{40,}"),
    re.compile(r"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}"),
    re.compile(r"sk-[A-Za-z0-9]{32,}"),
    re.compile(r"AKIA[A-Z0-9]{16}"),
    re.compile(r"gh[po]_[A-Za-z0-9]{36}"),
    re.compile(r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"),
    re.compile(r"AIza[A-Za-z0-9_-]{35}"),
    re.compile(r"xox[bp]-[0-9]+-[0-9]+(?:-[0-9]+)?-[A-Za-z0-9]+"),
    re.compile(r"[sr]k_live_[A-Za-z0-9]{24,}"),
    re.compile(r"-----BEGIN ([A-Z]+ )*PRIVATE KEY-----.+?-----END ([A-Z]+ )*PRIVATE KEY-----", re.S),
    re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
]
AWS_SECRET_CONTEXT = re.compile(r"(?i)(aws_?secret_?access_?key|secretaccesskey|secret_access_key|aws secret key)")


def luhn_ok(d):
    total = 0
    for i, ch in enumerate(reversed(d)):
        x = int(ch) * (2 if i % 2 else 1)
        total += x - 9 if x > 9 else x
    return total % 10 == 0


def luhn_runs(text):
    """(start, end) of every 13-19 digit window (whole groups, single space/dash separators) passing Luhn."""
    out = []
    for m in re.finditer(r"\d+(?:[ -]\d+)*", text):
        groups = [(m.start() + g.start(), m.start() + g.end()) for g in re.finditer(r"\d+", m.group())]
        for i in range(len(groups)):
            n = 0
            for j in range(i, len(groups)):
                n += groups[j][1] - groups[j][0]
                if n > 19:
                    break
                if n >= 13 and luhn_ok(re.sub(r"\D", "", text[groups[i][0]:groups[j][1]])):
                    out.append((groups[i][0], groups[j][1]))
    return out


def mod97_ok(s):
    s = s.replace(" ", "")
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", s):
        return False
    r = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in r)) % 97 == 1


def iban_candidates(text):
    """IBAN-shaped strings (compact or in groups of four) whose length fits their country."""
    out = []
    for m in re.finditer(r"(?<![A-Za-z0-9])([A-Z]{2})(\d{2})((?: ?[A-Z0-9]){11,30})", text):
        cc = m.group(1)
        if cc not in IBAN_LEN:
            continue
        raw = m.group(0)
        compact = ""
        for k, ch in enumerate(raw):
            if ch != " ":
                compact += ch
            if len(compact) == IBAN_LEN[cc]:
                end = m.start() + k + 1
                if end < len(text) and text[end].isalnum() and not (raw[k + 1:k + 2] == " "):
                    break  # the string continues: longer than an IBAN of this country
                out.append((m.start(), end, compact))
                break
    return out


SSN_RE = re.compile(r"(?<![\d-])(\d{3})-(\d{2})-(\d{4})(?![\d-])")


def ssn_valid(a, g, s):
    return a != "000" and a != "666" and not a.startswith("9") and g != "00" and s != "0000"


EMAIL_RE = re.compile(r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.([A-Za-z]{2,})")


def email_like(m):
    tld = m.group(1).lower()
    return len(tld) == 2 or tld in COMMON_TLDS or tld in {"de", "fr", "es", "it", "nl", "uk", "jp", "br", "in", "ch", "ie"}


IPV4_RE = re.compile(r"(?<![\d.])(?<!\d\.)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
IPV6_RE = re.compile(r"(?<![\w:.])[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?![\w:])")


def ip_candidates(text):
    out = []
    for m in IPV4_RE.finditer(text):
        if all(0 <= int(o) <= 255 and (o == "0" or not o.startswith("0")) for o in m.groups()):
            out.append((m.start(), m.end()))
    for m in IPV6_RE.finditer(text):
        s = m.group().rstrip(".")
        if s.count(":") < 2 or not re.search(r"[0-9A-Fa-f]", s):
            continue
        try:
            ipaddress.IPv6Address(s)
        except ValueError:
            continue
        out.append((m.start(), m.start() + len(s)))
    return out


def jwt_ok(v):
    try:
        head = v.split(".")[0]
        h = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        return isinstance(h, dict) and "alg" in h and v.count(".") == 2
    except Exception:
        return False


def secret_shape_ok(v, text):
    if v.startswith("eyJ"):
        return jwt_ok(v)
    if any(p.fullmatch(v) for p in SECRET_SHAPES):
        return True
    # AWS secret access key: 40 chars of base64 alphabet, only in context
    return bool(re.fullmatch(r"[A-Za-z0-9/+]{40}", v)) and bool(AWS_SECRET_CONTEXT.search(text))


def overlaps(a, spans):
    return any(a[0] < b[1] and b[0] < a[1] for b in spans)


def label_spans(text, labels, types=None):
    spans = []
    for lab in labels:
        if lab["value"] is None or (types and lab["type"] not in types):
            continue
        start = 0
        while True:
            i = text.find(lab["value"], start)
            if i < 0:
                break
            spans.append((i, i + len(lab["value"])))
            start = i + 1
    return spans


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "eval.jsonl")
    errors, infos = [], []
    seen_ids, seen_texts = set(), set()
    pos_docs, pos_labels, hard_neg = Counter(), Counter(), Counter()
    langs = defaultdict(Counter)
    countries = defaultdict(set)
    n = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            n += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"line {lineno}: invalid JSON: {e}")
                continue
            rid = rec.get("id")
            err = lambda msg: errors.append(f"{rid or 'line %d' % lineno}: {msg}")
            extra = set(rec) - {"id", "text", "labels", "lang", "note"}
            if extra:
                err(f"unexpected keys {sorted(extra)}")
            if not isinstance(rid, str) or not isinstance(rec.get("text"), str) or not isinstance(rec.get("labels"), list) \
                    or not isinstance(rec.get("lang"), str):
                err("missing or mistyped id/text/labels/lang")
                continue
            if rid in seen_ids:
                err("duplicate id")
            seen_ids.add(rid)
            text, labels = rec["text"], rec["labels"]
            if text in seen_texts:
                err("duplicate text")
            seen_texts.add(text)

            types_here = set()
            for lab in labels:
                t, v = lab.get("type"), lab.get("value", "MISSING")
                if t not in TYPES or set(lab) != {"type", "value"}:
                    err(f"bad label {lab}")
                    continue
                types_here.add(t)
                pos_labels[t] += 1
                if t == "injection":
                    if v is not None:
                        err("injection label must have value null")
                    continue
                if not isinstance(v, str) or not v or v not in text:
                    err(f"{t} value {v!r} does not occur in text")
                    continue
                if v != v.strip():
                    err(f"{t} value {v!r} has surrounding whitespace")
                if t == "card":
                    d = re.sub(r"[ -]", "", v)
                    if not re.fullmatch(r"\d{13,19}", d) or not luhn_ok(d):
                        err(f"card {v!r} is not a 13-19 digit Luhn-valid number")
                elif t == "iban":
                    c = v.replace(" ", "")
                    if not mod97_ok(c):
                        err(f"iban {v!r} fails mod-97")
                    elif IBAN_LEN.get(c[:2]) != len(c):
                        err(f"iban {v!r} has the wrong length for {c[:2]}")
                elif t == "ssn":
                    m = re.fullmatch(r"(\d{3})-(\d{2})-(\d{4})", v)
                    if not m or not ssn_valid(*m.groups()):
                        err(f"ssn {v!r} is not a valid SSN")
                elif t == "ip":
                    try:
                        ipaddress.ip_address(v)
                    except ValueError:
                        err(f"ip {v!r} does not parse")
                elif t == "email":
                    m = EMAIL_RE.fullmatch(v)
                    if not m or v.count("@") != 1:
                        err(f"email {v!r} is not address-shaped")
                elif t == "secret":
                    if not secret_shape_ok(v, text):
                        err(f"secret {v!r:.60} matches no known key shape")
                elif t == "phone":
                    if not re.fullmatch(r"[+\d() ./-]+|tel:[+\d]+", v) or not 7 <= len(re.sub(r"\D", "", v)) <= 15:
                        err(f"phone {v!r} is not phone-shaped")
                elif t in ("dob", "address"):
                    if not re.search(r"\d", v):
                        err(f"{t} {v!r} has no digit")
            for t in types_here:
                pos_docs[t] += 1
                langs[(t, "pos")][rec["lang"]] += 1
            m = re.match(r"([a-z]+)-neg-\d+$", rid)
            if m:
                t = m.group(1)
                if t not in TYPES:
                    err(f"negative id for unknown type {t}")
                elif t in types_here:
                    err(f"hard negative for {t} carries a {t} label")
                hard_neg[t] += 1
                langs[(t, "neg")][rec["lang"]] += 1
            elif not re.match(r"([a-z]+)-pos-\d+$", rid):
                err("id must look like <type>-pos-NNN or <type>-neg-NNN")
            cm = re.search(r"country=([A-Z,]+)", rec.get("note", ""))
            if cm:
                for t in ("phone", "address"):
                    if t in types_here:
                        countries[t].update(cm.group(1).split(","))

            # ---- consistency: nothing real left unlabelled
            card_spans = label_spans(text, labels, {"card"})
            all_spans = label_spans(text, labels)
            for a in luhn_runs(text):
                if overlaps(a, card_spans):
                    continue
                if overlaps(a, all_spans):
                    infos.append(f"{rid}: Luhn-valid digits {text[a[0]:a[1]]!r} inside a non-card label")
                else:
                    err(f"unlabelled Luhn-valid digit run {text[a[0]:a[1]]!r}")
            iban_spans = label_spans(text, labels, {"iban"})
            for s, e, c in iban_candidates(text):
                if mod97_ok(c) and not overlaps((s, e), iban_spans):
                    err(f"unlabelled valid IBAN {c!r}")
            ssn_spans = label_spans(text, labels, {"ssn"})
            for m in SSN_RE.finditer(text):
                if ssn_valid(*m.groups()) and not overlaps(m.span(), ssn_spans):
                    err(f"unlabelled valid SSN {m.group()!r}")
            email_spans = label_spans(text, labels, {"email"})
            for m in EMAIL_RE.finditer(text):
                if email_like(m) and not overlaps(m.span(), email_spans) and not overlaps(m.span(), all_spans):
                    err(f"unlabelled e-mail address {m.group()!r}")
            ip_spans = label_spans(text, labels, {"ip"})
            for a in ip_candidates(text):
                if not overlaps(a, ip_spans) and not overlaps(a, all_spans):
                    err(f"unlabelled IP address {text[a[0]:a[1]]!r}")
            secret_spans = label_spans(text, labels, {"secret"})
            for p in SECRET_SHAPES:
                bounded = re.compile(r"(?<![A-Za-z0-9_-])(?:" + p.pattern + r")(?![A-Za-z0-9_-])", p.flags)
                for m in bounded.finditer(text):
                    if p.pattern.startswith("eyJ") and not jwt_ok(m.group()):
                        continue
                    if not overlaps(m.span(), secret_spans):
                        err(f"unlabelled secret-shaped string {m.group()[:40]!r}")

    # ---- targets
    for t, (pmin, nmin) in TARGETS.items():
        if pos_docs[t] < pmin:
            errors.append(f"target: {t} has {pos_docs[t]} positive texts, need {pmin}")
        if hard_neg[t] < nmin:
            errors.append(f"target: {t} has {hard_neg[t]} hard negatives, need {nmin}")
    for t in ("phone", "address"):
        if len(countries[t]) < 6:
            errors.append(f"target: {t} covers {len(countries[t])} countries, need 6")
    for pol in ("pos", "neg"):
        missing = {"en", "de", "fr", "es"} - set(langs[("injection", pol)])
        if missing:
            errors.append(f"target: injection {pol} lacks languages {sorted(missing)}")

    print(f"{path}: {n} texts")
    print(f"{'type':<10} {'pos texts':>9} {'pos spans':>9} {'hard neg':>8} {'all neg':>8}   languages (pos / hard neg)")
    for t in TYPES:
        lp = ",".join(f"{k}:{v}" for k, v in sorted(langs[(t, 'pos')].items()))
        ln = ",".join(f"{k}:{v}" for k, v in sorted(langs[(t, 'neg')].items()))
        print(f"{t:<10} {pos_docs[t]:>9} {pos_labels[t]:>9} {hard_neg[t]:>8} {n - pos_docs[t]:>8}   {lp} / {ln}")
    for t in ("phone", "address"):
        print(f"{t} countries: {', '.join(sorted(countries[t]))}")
    for i in infos:
        print("info:", i)
    for e in errors:
        print("ERROR:", e)
    print("OK" if not errors else f"{len(errors)} error(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
