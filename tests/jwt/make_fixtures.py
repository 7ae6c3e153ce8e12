#!/usr/bin/env python3
"""JWT fixtures for policy/tests/jwt.rs, made by an independent implementation.

Made with (from PyPI): PyJWT==2.15.1, cryptography==50.0.2, on Python 3.11.7.

    python3 -m venv /tmp/jwt-venv
    /tmp/jwt-venv/bin/pip install PyJWT==2.15.1 cryptography==50.0.2
    /tmp/jwt-venv/bin/python tests/jwt/make_fixtures.py

Writes, next to this script:
  fixtures.json  the rules, the current time to verify at, the keys in their configuration forms
                 (public PEM, HMAC secret) and every token case with its expected outcome;
  jwks.json      a JWKS document (PyJWT's JWK encoding) with the usable keys and some that the
                 gateway must skip, with the expected skip reason in fixtures.json.

The private keys live in TEST-ONLY-private-keys.json. They are test keys, committed so that adding
a case does not change every key; they protect nothing. Delete the file to make fresh keys.

All times are fixed (`iat`/`nbf`/`exp` around NOW below), so the Rust tests pass `now` explicitly
and never depend on the wall clock. ES256 signatures are randomised: rerunning rewrites those
tokens even with the same keys, and that is fine.

Tokens are made with PyJWT wherever PyJWT will make them. PyJWT refuses to make the attack tokens
(HS256 keyed with a PEM public key, which is its own algorithm-confusion guard), so those are put
together by hand from the standard library's hmac and base64, as an attacker would.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys

import cryptography
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

HERE = os.path.dirname(os.path.abspath(__file__))
PRIVATE_KEYS = os.path.join(HERE, "TEST-ONLY-private-keys.json")

NOW = 1_700_001_000
IAT = 1_700_000_000
EXP = IAT + 3600
LEEWAY = 30
ISSUER = "https://issuer.test.example"
SECOND_ISSUER = "https://second-issuer.test.example"
AUDIENCE = "edge-gateway"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(obj) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


# ---- keys -------------------------------------------------------------------------------------

def load_or_make_keys():
    """Private keys by name, reused from TEST-ONLY-private-keys.json when present."""
    makers = {
        "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa_other": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa_1024_weak": lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "ec": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ec_other": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ec_p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ed": lambda: ed25519.Ed25519PrivateKey.generate(),
        "x25519": lambda: x25519.X25519PrivateKey.generate(),
    }
    stored = {}
    if os.path.exists(PRIVATE_KEYS):
        with open(PRIVATE_KEYS) as f:
            stored = json.load(f)
    keys, out = {}, {"_comment": "TEST-ONLY keys for tests/jwt fixtures. Never use them for anything else."}
    for name, make in makers.items():
        if name in stored:
            key = serialization.load_pem_private_key(stored[name].encode(), password=None)
        else:
            key = make()
        keys[name] = key
        out[name] = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    for name in ("hmac_secret_b64url", "hmac_other_secret_b64url", "hmac_64_b64url"):
        size = 64 if name == "hmac_64_b64url" else 32
        out[name] = stored.get(name) or b64url(secrets.token_bytes(size))
    with open(PRIVATE_KEYS, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    secrets_ = {name: base64.urlsafe_b64decode(out[name] + "==") for name in out if name.endswith("_b64url")}
    return keys, secrets_


def public_pem(private_key) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def jwk(algorithm_class, key, **extra):
    obj = json.loads(algorithm_class.to_jwk(key))
    obj.update(extra)
    return obj


# ---- tokens -----------------------------------------------------------------------------------

def claims(sub="alice", **overrides):
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "tenant": "acme",
        "tier": "pro",
        "iat": IAT,
        "nbf": IAT,
        "exp": EXP,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256_by_hand(header, payload, secret: bytes) -> str:
    signing_input = f"{b64url_json(header)}.{b64url_json(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def main():
    keys, secrets_ = load_or_make_keys()
    rsa_key, ec_key, ed_key = keys["rsa"], keys["ec"], keys["ed"]
    hmac_secret = secrets_["hmac_secret_b64url"]
    rsa_pem = public_pem(rsa_key)

    def ok(consumer, alg, kid, tenant="acme", tier="pro", issuer=ISSUER, expires_at=EXP):
        return {"ok": {"consumer": consumer, "tenant": tenant, "tier": tier, "issuer": issuer,
                       "expires_at": expires_at, "algorithm": alg, "key_id": kid}}

    def err(variant, **fields):
        return {"error": variant, **fields}

    cases = []

    def case(name, token, expect, about):
        cases.append({"name": name, "about": about, "token": token, "expect": expect})

    rs = lambda payload, kid="rsa-1", key=rsa_key, **h: jwt.encode(payload, key, algorithm="RS256", headers={"kid": kid, **h} if kid else h or None)
    es = lambda payload, kid="ec-1", key=ec_key: jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid})
    ed = lambda payload, kid="ed-1": jwt.encode(payload, ed_key, algorithm="EdDSA", headers={"kid": kid})
    hs = lambda payload, kid="hmac-1", secret=hmac_secret: jwt.encode(payload, secret, algorithm="HS256", headers={"kid": kid})

    # Valid tokens, one per algorithm, and the claim mapping.
    case("rs256_valid", rs(claims("alice")), ok("alice", "RS256", "rsa-1"), "RS256, kid rsa-1")
    case("es256_valid", es(claims("bob", tenant="globex", tier="free")), ok("bob", "ES256", "ec-1", "globex", "free"), "ES256 (P-256), kid ec-1")
    case("eddsa_valid", ed(claims("carol", tenant=None, tier="enterprise")), ok("carol", "EdDSA", "ed-1", None, "enterprise"),
         "EdDSA (Ed25519), no tenant claim: tenant is none")
    case("hs256_valid", hs(claims("dave", tenant=4242)), ok("dave", "HS256", "hmac-1", "4242"), "HS256; a numeric tenant maps to its decimal text")
    case("rs256_valid_no_kid", rs(claims("erin"), kid=None), ok("erin", "RS256", "rsa-1"), "no kid: every RS256 key is tried")
    case("aud_array_valid", es(claims("frank", aud=["other-api", AUDIENCE])), ok("frank", "ES256", "ec-1"), "aud as an array containing ours")
    case("second_issuer_valid", rs(claims("grace", iss=SECOND_ISSUER)), ok("grace", "RS256", "rsa-1", issuer=SECOND_ISSUER),
         "the second accepted issuer")
    case("numeric_sub_valid", hs(claims(12345)), ok("12345", "HS256", "hmac-1"), "numeric sub maps to its decimal text")
    case("no_tier_valid", ed(claims("heidi", tier=None)), ok("heidi", "EdDSA", "ed-1", tier=None), "no tier claim: tier is none")

    # Time, at NOW with LEEWAY.
    case("expired", rs(claims(exp=NOW - LEEWAY - 1)), err("Expired"), "exp one second beyond the leeway")
    case("expired_within_leeway", rs(claims("ivan", exp=NOW - LEEWAY)), ok("ivan", "RS256", "rsa-1", expires_at=NOW - LEEWAY),
         "exp passed, but within the leeway")
    case("not_yet_valid", es(claims(nbf=NOW + LEEWAY + 1)), err("NotYetValid"), "nbf one second beyond the leeway")
    case("nbf_within_leeway", es(claims("judy", nbf=NOW + LEEWAY)), ok("judy", "ES256", "ec-1"), "nbf in the future within the leeway")
    case("iat_in_future", ed(claims(iat=NOW + 300, nbf=None)), err("NotYetValid"), "issued five minutes from now")
    case("missing_exp", hs(claims(exp=None)), err("MissingClaim", claim="exp"), "no exp")
    case("exp_not_a_number", hs(claims(exp=str(EXP))), err("Malformed"), "exp as a string")

    # Issuer and audience.
    case("wrong_audience", rs(claims(aud="someone-else")), err("WrongAudience"), "aud names another service")
    case("wrong_audience_array", rs(claims(aud=["a", "b"])), err("WrongAudience"), "aud array without ours")
    case("missing_aud", es(claims(aud=None)), err("MissingClaim", claim="aud"), "no aud")
    case("wrong_issuer", es(claims(iss="https://evil.test.example")), err("WrongIssuer"), "iss not accepted")
    case("missing_sub", ed(claims(sub=None)), err("MissingClaim", claim="sub"), "no sub")

    # Signatures.
    case("rs256_other_key_same_kid", rs(claims(), key=keys["rsa_other"]), err("BadSignature"), "signed by another RSA key, kid rsa-1")
    case("es256_other_key_same_kid", es(claims(), key=keys["ec_other"]), err("BadSignature"), "signed by another P-256 key, kid ec-1")
    case("hs256_other_secret", hs(claims(), secret=secrets_["hmac_other_secret_b64url"]), err("BadSignature"), "another HMAC secret")
    valid = rs(claims("alice"))
    header, _, signature = valid.split(".")
    case("tampered_payload", f"{header}.{b64url_json(claims('mallory'))}.{signature}", err("BadSignature"),
         "a valid RS256 token with its payload replaced (sub mallory)")
    es_valid = es(claims("bob"))
    h, p, s = es_valid.split(".")
    sig = bytearray(base64.urlsafe_b64decode(s + "=="))
    sig[10] ^= 0x01
    case("tampered_signature", f"{h}.{p}.{b64url(bytes(sig))}", err("BadSignature"), "one bit of an ES256 signature flipped")
    signing_input = f"{b64url_json({'alg': 'ES256', 'kid': 'ec-1', 'typ': 'JWT'})}.{b64url_json(claims())}"
    der_sig = ec_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    case("es256_der_signature", f"{signing_input}.{b64url(der_sig)}", err("BadSignature"),
         "ES256 with an ASN.1 DER signature instead of the JWS r||s form")

    # Refused algorithms.
    case("alg_none", jwt.encode(claims(), None, algorithm="none"), err("AlgNone"), "PyJWT's unsigned token")
    case("alg_none_uppercase_with_kid", f"{b64url_json({'alg': 'NONE', 'kid': 'rsa-1', 'typ': 'JWT'})}.{b64url_json(claims())}.",
         err("AlgNone"), "alg NONE with a real kid")
    case("alg_confusion_hs256_rsa_pem_kid", hs256_by_hand({"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, claims(), rsa_pem.encode()),
         err("AlgorithmMismatch", key_alg="RS256", token_alg="HS256"),
         "HS256 keyed with the RSA public key PEM (the classic confusion attack), kid of the RSA key")
    case("alg_confusion_hs256_rsa_pem_no_kid", hs256_by_hand({"alg": "HS256", "typ": "JWT"}, claims(), rsa_pem.encode()),
         err("BadSignature"), "the same without kid: only HS256 keys are tried, and the PEM is not their secret")
    case("eddsa_with_es256_kid", ed(claims(), kid="ec-1"), err("AlgorithmMismatch", key_alg="ES256", token_alg="EdDSA"),
         "an EdDSA token naming the P-256 key")
    case("unsupported_alg_hs512", jwt.encode(claims(), secrets_["hmac_64_b64url"], algorithm="HS512", headers={"kid": "hmac-1"}),
         err("UnsupportedAlgorithm", alg="HS512"), "HS512 is not accepted")
    case("unsupported_alg_ps256", jwt.encode(claims(), rsa_key, algorithm="PS256", headers={"kid": "rsa-1"}),
         err("UnsupportedAlgorithm", alg="PS256"), "PS256 is not accepted")

    # Keys and headers.
    case("unknown_kid", rs(claims(), kid="rsa-2"), err("UnknownKey", kid="rsa-2"), "kid the key set does not have")
    other_jwk = jwk(RSAAlgorithm, keys["rsa_other"].public_key())
    case("embedded_jwk_ignored", rs(claims(), key=keys["rsa_other"], jwk=other_jwk), err("BadSignature"),
         "signed by an attacker key that the header carries as `jwk`, kid rsa-1: the embedded key is never used")
    case("jku_ignored", rs(claims(), kid="attacker-1", key=keys["rsa_other"], jku="https://attacker.test.example/jwks.json"),
         err("UnknownKey", kid="attacker-1"), "`jku` pointing elsewhere is never followed")
    case("crit_header", jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec-1", "crit": ["x-policy"], "x-policy": 1}),
         err("UnsupportedHeader", member="crit"), "a critical extension the gateway cannot honour")
    case("malformed_two_parts", "eyJhbGciOiJIUzI1NiJ9.e30", err("Malformed"), "two parts, not three")
    case("malformed_header_not_json", f"{b64url(b'not json')}.{b64url_json(claims())}.{b64url(b'sig')}", err("Malformed"),
         "header is not JSON")

    # The JWKS: usable keys first, then keys the gateway must skip, with the reason it must give.
    usable = [
        jwk(RSAAlgorithm, rsa_key.public_key(), kid="rsa-1", use="sig", alg="RS256"),
        jwk(ECAlgorithm, ec_key.public_key(), kid="ec-1", use="sig", alg="ES256"),
        jwk(OKPAlgorithm, ed_key.public_key(), kid="ed-1", use="sig", alg="EdDSA"),
        jwk(HMACAlgorithm, hmac_secret, kid="hmac-1", alg="HS256"),
        # A private JWK (PyJWT marks it key_ops ["sign"]; without that member): only its public
        # half is read, so it verifies like rsa-1.
        {k: v for k, v in jwk(RSAAlgorithm, rsa_key, kid="rsa-1-private-form").items() if k != "key_ops"},
    ]
    skipped = [
        (jwk(RSAAlgorithm, keys["rsa_1024_weak"].public_key(), kid="rsa-1024", alg="RS256"), "WeakKey"),
        (jwk(ECAlgorithm, keys["ec_p384"].public_key(), kid="ec-p384", alg="ES384"), "UnsupportedAlgorithm"),
        (jwk(ECAlgorithm, keys["ec_p384"].public_key(), kid="ec-p384-no-alg"), "UnsupportedKey"),
        # PyJWT has no X25519 JWK encoding (X25519 does not sign); RFC 8037 form by hand.
        ({"kty": "OKP", "crv": "X25519", "kid": "x25519",
          "x": b64url(keys["x25519"].public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))},
         "UnsupportedKey"),
        (jwk(RSAAlgorithm, keys["rsa_other"].public_key(), kid="rsa-enc", use="enc"), "NotForSignatures"),
        (jwk(RSAAlgorithm, keys["rsa_other"].public_key(), kid="rsa-encrypt-ops", key_ops=["encrypt"]), "NotForSignatures"),
        (jwk(RSAAlgorithm, keys["rsa_other"].public_key(), kid="rsa-rs512", alg="RS512"), "UnsupportedAlgorithm"),
        (jwk(ECAlgorithm, keys["ec_other"].public_key(), kid="ec-says-rs256", alg="RS256"), "KeyTypeMismatch"),
        (dict(jwk(RSAAlgorithm, keys["rsa_other"].public_key(), kid="rsa-bad-n"), n="***not base64url***"), "InvalidKey"),
        (dict(jwk(ECAlgorithm, ec_key.public_key(), kid="ec-off-curve"), y=b64url(b"\x01" * 32)), "InvalidKey"),
        ({"kty": "oct", "kid": "hmac-short", "k": b64url(b"sixteen byte key")}, "WeakKey"),
        ({"kty": "WAT", "kid": "unknown-kty"}, "UnsupportedKey"),
    ]
    jwks = {"keys": usable + [k for k, _ in skipped]}
    with open(os.path.join(HERE, "jwks.json"), "w") as f:
        json.dump(jwks, f, indent=2)
        f.write("\n")

    fixtures = {
        "_comment": "Generated by tests/jwt/make_fixtures.py; do not edit by hand. All keys are TEST-ONLY.",
        "generated_with": {"python": sys.version.split()[0], "PyJWT": jwt.__version__, "cryptography": cryptography.__version__},
        "now": NOW,
        "rules": {
            "issuers": [ISSUER, SECOND_ISSUER],
            "audiences": [AUDIENCE],
            "leeway_secs": LEEWAY,
            "consumer_claim": "sub",
            "tenant_claim": "tenant",
            "tier_claim": "tier",
        },
        "keys": {
            "rsa-1": {"alg": "RS256", "pem": rsa_pem},
            "ec-1": {"alg": "ES256", "pem": public_pem(ec_key)},
            "ed-1": {"alg": "EdDSA", "pem": public_pem(ed_key)},
            "hmac-1": {"alg": "HS256", "secret_b64url": b64url(hmac_secret)},
        },
        "jwks": {
            "file": "jwks.json",
            "usable_kids": [k["kid"] for k in usable],
            "skipped": [{"kid": k["kid"], "reason": reason} for k, reason in skipped],
        },
        "cases": cases,
    }
    with open(os.path.join(HERE, "fixtures.json"), "w") as f:
        json.dump(fixtures, f, indent=2)
        f.write("\n")
    print(f"{len(cases)} cases, {len(usable)} usable and {len(skipped)} unusable JWKs written to {HERE}")


if __name__ == "__main__":
    main()
