#!/usr/bin/env python3
"""pyhandle 1.5.0 against a running idnode (run by scripts/interop-pyhandle.sh).

Basic auth (username + password) and, with --cert-file etc., pyhandle's
client-certificate mode: requests sends the certificate in the TLS handshake
and pyhandle adds `Authorization: Handle clientCert="true"` to PUT/DELETE.

Every check prints one PASS line; the first failure prints FAIL with the
reason (pyhandle's exceptions carry URL, HTTP status and body) and exits 1.
"""

import argparse
import json
import os
import sys
import traceback
import uuid

import urllib3
from pyhandle.client.resthandleclient import RESTHandleClient
from pyhandle.clientcredentials import PIDClientCredentials
from pyhandle.handleexceptions import (
    GenericHandleError,
    HandleAlreadyExistsException,
    HandleAuthenticationError,
    HandleNotFoundException,
)

# HTTPS_verify=False makes urllib3 warn on every request.
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

PASSED = []


class CheckFailed(Exception):
    pass


def expect(cond, msg):
    if not cond:
        raise CheckFailed(msg)


def check(name, fn):
    try:
        fn()
    except CheckFailed as e:
        fail(name, str(e))
    except Exception as e:  # pyhandle errors, KeyError on odd JSON, ...
        fail(name, "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
    PASSED.append(name)
    print("PASS: %s" % name, flush=True)


def fail(name, msg):
    print("FAIL: %s\n      %s" % (name, msg.replace("\n", "\n      ")), flush=True)
    print("%d passed, 1 failed" % len(PASSED), flush=True)
    sys.exit(1)


def read_secret(path):
    with open(path, encoding="utf-8") as f:
        secret = f.read().strip()
    if not secret:
        print("FAIL: empty secret in %s" % path)
        sys.exit(1)
    return secret


def client(url, user, password):
    return RESTHandleClient.instantiate_with_username_and_password(
        url, user, password, HTTPS_verify=False
    )


def values_by_index(record):
    return {int(v["index"]): v for v in record["values"]}


def expect_refused(call, what):
    """The write must fail the way Handle.Net refuses it.

    Bad credentials: Handle.Net answers 401 -> HandleAuthenticationError.
    Good credentials without permission: RC 400/401 with HTTP 403 -> pyhandle
    has no dedicated exception and raises GenericHandleError.
    """
    try:
        result = call()
    except HandleAuthenticationError as e:
        return "HandleAuthenticationError (HTTP %s)" % status_of(e)
    except GenericHandleError as e:
        status = status_of(e)
        expect(status in (401, 403), "%s: expected HTTP 401/403, got %s: %s" % (what, status, e))
        return "GenericHandleError (HTTP %s)" % status
    raise CheckFailed("%s was accepted (returned %r)" % (what, result))


def status_of(e):
    resp = getattr(e, "response", None)
    return getattr(resp, "status_code", None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--other-prefix", required=True)
    ap.add_argument("--other-user", required=True)
    ap.add_argument("--other-password-file", required=True)
    # Client-certificate mode (all or none): the identity "index:handle" the
    # certificates name, the certificate + key registered as its HS_PUBKEY (CN
    # subject, two files), the same key in one file with a UID-subject
    # certificate, and a certificate of the same CN with an unregistered key.
    cert_opts = ["cert_user", "cert_file", "key_file", "cert_and_key_file", "wrong_cert_file", "wrong_key_file"]
    for opt in cert_opts:
        ap.add_argument("--" + opt.replace("_", "-"))
    args = ap.parse_args()
    given = [o for o in cert_opts if getattr(args, o)]
    if given and len(given) != len(cert_opts):
        ap.error("client-certificate checks need all of --%s" % ", --".join(o.replace("_", "-") for o in cert_opts))

    url, prefix = args.url, args.prefix
    secret = read_secret(args.password_file)
    other_secret = read_secret(args.other_password_file)
    admin_handle = args.user.split(":", 1)[1]

    # Mixed case on purpose: pyhandle compares the "handle" in every answer
    # with the handle it asked for, character by character.
    run = uuid.uuid4().hex[:8]
    handle = "%s/PyHandle-Interop-%s" % (prefix, run)
    url1 = "https://example.com/interop/%s" % run
    url2 = "https://example.org/moved/%s" % run
    state = {}

    # 1. instantiate: GETs the username handle (0.NA/<prefix>) without auth and
    #    requires 200 + responseCode 1 + exact "handle".
    def instantiate():
        state["c"] = client(url, args.user, secret)

    check("instantiate_with_username_and_password(%s) finds its username handle" % args.user, instantiate)
    c = state["c"]

    def admin_handle_public_read():
        rec = c.retrieve_handle_record_json(admin_handle)
        expect(rec is not None, "%s not found" % admin_handle)
        expect(rec["handle"] == admin_handle, "handle %r != %r" % (rec["handle"], admin_handle))
        types = [v["type"] for v in rec["values"]]
        expect("HS_ADMIN" in types, "no HS_ADMIN in %s: %s" % (admin_handle, types))
        # The password is the HS_SECKEY value: it must not be publicly readable.
        expect("HS_SECKEY" not in types, "HS_SECKEY is in an anonymous read of %s: %s" % (admin_handle, types))
        expect(secret not in repr(rec), "the secret is visible in an anonymous read of %s" % admin_handle)

    check("anonymous read of %s shows HS_ADMIN but not the secret key" % admin_handle, admin_handle_public_read)

    # 2. create
    def register():
        got = c.register_handle(handle, url1, checksum="md5:0123abcd", DESCRIPTION="pyhandle interop", overwrite=False)
        expect(got == handle, "register_handle returned %r, expected %r" % (got, handle))

    check("register_handle(%s, overwrite=False) creates it" % handle, register)

    def register_again():
        try:
            c.register_handle(handle, url1, overwrite=False)
        except HandleAlreadyExistsException:
            return
        raise CheckFailed("second register_handle(overwrite=False) did not raise HandleAlreadyExistsException")

    check("register_handle(overwrite=False) on an existing handle raises HandleAlreadyExistsException", register_again)

    def register_overwrite():
        h2 = "%s/PyHandle-Overwrite-%s" % (prefix, run)
        expect(c.register_handle(h2, url1, checksum="x", overwrite=True) == h2, "create with overwrite=True failed")
        expect(c.register_handle(h2, url2, overwrite=True) == h2, "replace with overwrite=True failed")
        rec = c.retrieve_handle_record_json(h2)
        types = sorted(v["type"] for v in rec["values"])
        expect(types == ["HS_ADMIN", "URL"], "record not replaced as a whole, types %r" % types)
        expect(c.get_value_from_handle(h2, "URL") == url2, "URL not replaced")
        expect(c.delete_handle(h2) == h2, "delete_handle(%s) failed" % h2)

    check("register_handle(overwrite=True) creates, then replaces the whole record", register_overwrite)

    # 3. read back
    def read_json():
        rec = c.retrieve_handle_record_json(handle)
        expect(rec is not None, "retrieve_handle_record_json returned None")
        expect(rec["handle"] == handle, "handle %r" % rec["handle"])
        vals = values_by_index(rec)
        expect(1 in vals and vals[1]["type"] == "URL", "no URL at index 1: %r" % rec["values"])
        expect(vals[1]["data"] == {"format": "string", "value": url1}, "URL data %r" % vals[1]["data"])
        expect(100 in vals and vals[100]["type"] == "HS_ADMIN", "no HS_ADMIN at index 100: %r" % rec["values"])
        adm = vals[100]["data"]
        expect(adm.get("format") == "admin", "HS_ADMIN format %r" % adm)
        expect(adm["value"]["handle"] == admin_handle, "HS_ADMIN handle %r" % adm["value"])
        # pyhandle sends {"index": "200", ...} (a string); Handle.Net answers a number.
        expect(adm["value"]["index"] == 200, "HS_ADMIN index should be the number 200: %r" % adm["value"])
        expect(adm["value"]["permissions"] == "011111110011", "HS_ADMIN permissions %r" % adm["value"])
        types = sorted(v["type"] for v in rec["values"])
        expect(types == ["CHECKSUM", "DESCRIPTION", "HS_ADMIN", "URL"], "types %r" % types)
        # pyhandle's modify_handle_value does entry.pop('timestamp') on every
        # value it rewrites: a value without "timestamp" breaks it (KeyError).
        missing = [v["index"] for v in rec["values"] if "timestamp" not in v]
        expect(not missing, "values without 'timestamp': %r" % missing)

    check("retrieve_handle_record_json returns URL@1, HS_ADMIN@100 -> 200:%s, CHECKSUM, DESCRIPTION" % admin_handle, read_json)

    def read_dict():
        rec = c.retrieve_handle_record(handle)
        expect(rec is not None, "retrieve_handle_record returned None")
        expect(rec.get("URL") == url1, "URL %r" % rec.get("URL"))
        expect(rec.get("CHECKSUM") == "md5:0123abcd", "CHECKSUM %r" % rec.get("CHECKSUM"))
        expect(rec.get("DESCRIPTION") == "pyhandle interop", "DESCRIPTION %r" % rec.get("DESCRIPTION"))
        got = c.get_value_from_handle(handle, "URL")
        expect(got == url1, "get_value_from_handle(URL) = %r" % got)
        expect(c.get_value_from_handle(handle, "NO_SUCH_TYPE") is None, "missing type did not give None")

    check("retrieve_handle_record / get_value_from_handle read the values", read_dict)

    # 4. modify an existing value (PUT ?index=1&overwrite=true)
    def modify():
        got = c.modify_handle_value(handle, URL=url2)
        expect(got == handle, "modify_handle_value returned %r" % got)
        expect(c.get_value_from_handle(handle, "URL") == url2, "URL not changed")
        vals = values_by_index(c.retrieve_handle_record_json(handle))
        expect(vals[1]["type"] == "URL" and vals[1]["data"]["value"] == url2, "index 1 is %r" % vals[1])

    check("modify_handle_value(URL=...) replaces index 1", modify)

    # 5. add values: modify with add_if_not_exist (overwrite=true) and
    #    add_handle_value (overwrite=false); pyhandle picks free indexes 4, 5.
    def add():
        got = c.modify_handle_value(handle, EMAIL="ops@example.com")
        expect(got == handle, "modify_handle_value returned %r" % got)
        got = c.add_handle_value(handle, NOTE="added with overwrite=false")
        expect(got == handle, "add_handle_value returned %r" % got)
        vals = values_by_index(c.retrieve_handle_record_json(handle))
        expect(vals.get(4, {}).get("type") == "EMAIL", "index 4 is %r" % vals.get(4))
        expect(vals[4]["data"]["value"] == "ops@example.com", "EMAIL %r" % vals[4]["data"])
        expect(vals.get(5, {}).get("type") == "NOTE", "index 5 is %r" % vals.get(5))
        expect(len(vals) == 6, "expected 6 values, got %r" % sorted(vals))

    check("modify_handle_value(EMAIL=...) and add_handle_value(NOTE=...) add values 4 and 5", add)

    # 6. delete one value (DELETE ?index=3)
    def delete_value():
        got = c.delete_handle_value(handle, "CHECKSUM")
        expect(got == handle, "delete_handle_value returned %r" % got)
        expect(c.get_value_from_handle(handle, "CHECKSUM") is None, "CHECKSUM still there")
        vals = values_by_index(c.retrieve_handle_record_json(handle))
        expect(3 not in vals and len(vals) == 5, "values now %r" % sorted(vals))

    check("delete_handle_value(CHECKSUM) removes only that value", delete_value)

    # 7. wrong password: instantiation only checks the username handle; the
    #    first write must be refused with HTTP 401 (Handle.Net behaviour).
    def wrong_password():
        bad = client(url, args.user, secret + "-wrong")
        try:
            bad.register_handle(handle + "-bad", url1, overwrite=True)
        except HandleAuthenticationError as e:
            expect(status_of(e) == 401, "expected HTTP 401, got %s" % status_of(e))
        else:
            raise CheckFailed("register_handle with a wrong password was accepted")
        try:
            bad.delete_handle(handle)
        except HandleAuthenticationError:
            pass
        else:
            raise CheckFailed("delete_handle with a wrong password did not raise HandleAuthenticationError")
        expect(c.retrieve_handle_record_json(handle + "-bad") is None, "handle created despite wrong password")
        expect(c.retrieve_handle_record_json(handle) is not None, "handle deleted despite wrong password")

    check("wrong password is refused (HandleAuthenticationError, HTTP 401), nothing written", wrong_password)

    # 8. admin of another prefix: authenticated, but not an admin here.
    def other_prefix_admin():
        other = client(url, args.other_user, other_secret)
        # Control: its credentials are good for its own prefix.
        own = "%s/PyHandle-Interop-%s" % (args.other_prefix, run)
        expect(other.register_handle(own, url1, overwrite=False) == own, "could not create %s" % own)
        expect(other.delete_handle(own) == own, "could not delete %s" % own)

        foreign = "%s/PyHandle-Foreign-%s" % (prefix, run)
        how = [
            expect_refused(lambda: other.register_handle(foreign, url1, overwrite=True), "create under %s" % prefix),
            expect_refused(lambda: other.modify_handle_value(handle, URL=url1), "modify %s" % handle),
            expect_refused(lambda: other.delete_handle(handle), "delete %s" % handle),
        ]
        expect(c.retrieve_handle_record_json(foreign) is None, "%s was created by the other admin" % foreign)
        expect(c.get_value_from_handle(handle, "URL") == url2, "%s was modified by the other admin" % handle)
        print("      refused as: %s" % "; ".join(how))

    check("admin of %s cannot create, modify or delete under %s" % (args.other_prefix, prefix), other_prefix_admin)

    # 9. delete the handle; it is gone afterwards.
    def delete_handle():
        got = c.delete_handle(handle)
        expect(got == handle, "delete_handle returned %r" % got)
        expect(c.retrieve_handle_record_json(handle) is None, "retrieve_handle_record_json still finds it")
        try:
            c.get_value_from_handle(handle, "URL")
        except HandleNotFoundException:
            pass
        else:
            raise CheckFailed("get_value_from_handle did not raise HandleNotFoundException")
        try:
            c.delete_handle(handle)
        except HandleNotFoundException:
            pass
        else:
            raise CheckFailed("second delete_handle did not raise HandleNotFoundException")

    check("delete_handle removes it (then None / HandleNotFoundException)", delete_handle)

    if given:
        client_cert_checks(args, c, run)

    print("%d passed, 0 failed" % len(PASSED), flush=True)


def cert_client_from_json(url, cert_file, key_file, workdir, name):
    """pyhandle's documented certificate setup: a credentials JSON file with
    certificate_only + private_key, loaded with PIDClientCredentials."""
    path = os.path.join(workdir, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "client": "rest",
                "handle_server_url": url,
                "certificate_only": os.path.abspath(cert_file),
                "private_key": os.path.abspath(key_file),
                "HTTPS_verify": "False",
            },
            f,
        )
    creds = PIDClientCredentials.load_from_JSON(path)
    return RESTHandleClient.instantiate_with_credentials(creds)


def client_cert_checks(args, c, run):
    """pyhandle in client-certificate mode (c: the Basic client, for reading)."""
    url, prefix = args.url, args.prefix
    cert_index, cert_handle = args.cert_user.split(":", 1)
    handle = "%s/PyHandle-Cert-%s" % (prefix, run)
    url1 = "https://example.com/cert/%s" % run
    url2 = "https://example.org/cert-moved/%s" % run
    # Credentials files next to the certificates (the caller's scratch dir).
    workdir = os.path.dirname(os.path.abspath(args.cert_file))
    state = {}

    def identity_handle():
        rec = c.retrieve_handle_record_json(cert_handle)
        expect(rec is not None, "%s not found" % cert_handle)
        vals = values_by_index(rec)
        key = vals.get(int(cert_index))
        expect(key is not None and key["type"] == "HS_PUBKEY", "no HS_PUBKEY at index %s: %r" % (cert_index, rec["values"]))

    check("identity handle %s holds the certificate key as HS_PUBKEY@%s" % (cert_handle, cert_index), identity_handle)

    def instantiate():
        cc = cert_client_from_json(url, args.cert_file, args.key_file, workdir, "credentials-cert.json")
        # Nothing is checked on the server at instantiation in this mode; the
        # first request (a GET) already presents the certificate.
        rec = cc.retrieve_handle_record_json(cert_handle)
        expect(rec is not None and rec["handle"] == cert_handle, "read of %s through the certificate client: %r" % (cert_handle, rec))
        state["cc"] = cc

    check("instantiate_with_credentials(certificate_only + private_key, CN=%s) reads" % args.cert_user, instantiate)
    cc = state["cc"]

    def register():
        got = cc.register_handle(handle, url1, checksum="sha256:cert", overwrite=False)
        expect(got == handle, "register_handle returned %r, expected %r" % (got, handle))
        rec = c.retrieve_handle_record_json(handle)
        expect(rec is not None, "%s not readable after creation" % handle)
        vals = values_by_index(rec)
        expect(vals.get(1, {}).get("type") == "URL", "no URL at index 1: %r" % rec["values"])
        expect(vals[1]["data"]["value"] == url1, "URL data %r" % vals[1]["data"])
        adm = vals.get(100, {}).get("data", {}).get("value", {})
        # pyhandle's default owner: 200:0.NA/<prefix>, the group the identity is in.
        expect(adm.get("handle") == "0.NA/" + prefix and adm.get("index") == 200, "HS_ADMIN@100 %r" % vals.get(100))
        types = sorted(v["type"] for v in rec["values"])
        expect(types == ["CHECKSUM", "HS_ADMIN", "URL"], "types %r" % types)
        expect(cc.get_value_from_handle(handle, "CHECKSUM") == "sha256:cert", "CHECKSUM not read back")

    check("certificate client: register_handle(%s) creates it, read back" % handle, register)

    def modify():
        expect(cc.modify_handle_value(handle, URL=url2) == handle, "modify_handle_value(URL) failed")
        expect(cc.add_handle_value(handle, EMAIL="cert@example.com") == handle, "add_handle_value(EMAIL) failed")
        expect(cc.delete_handle_value(handle, "CHECKSUM") == handle, "delete_handle_value(CHECKSUM) failed")
        rec = c.retrieve_handle_record_json(handle)
        vals = values_by_index(rec)
        expect(vals[1]["data"]["value"] == url2, "URL not changed: %r" % vals[1])
        types = sorted(v["type"] for v in rec["values"])
        expect(types == ["EMAIL", "HS_ADMIN", "URL"], "types %r" % types)

    check("certificate client: modify_handle_value, add_handle_value, delete_handle_value", modify)

    # The same key in one PEM file with a certificate whose subject names the
    # identity in UID (CN is something else), and handleowner = the identity
    # itself: the created handle's HS_ADMIN names it directly.
    def one_file_uid():
        oc = RESTHandleClient.instantiate_with_credentials(
            PIDClientCredentials(
                client="rest",
                handle_server_url=url,
                certificate_and_key=os.path.abspath(args.cert_and_key_file),
                handleowner=args.cert_user,
            ),
            HTTPS_verify=False,
        )
        h = "%s/PyHandle-CertUID-%s" % (prefix, run)
        expect(oc.register_handle(h, url1, overwrite=False) == h, "register_handle(%s) failed" % h)
        vals = values_by_index(c.retrieve_handle_record_json(h))
        adm = vals.get(100, {}).get("data", {}).get("value", {})
        expect(adm.get("handle") == cert_handle and adm.get("index") == int(cert_index), "HS_ADMIN@100 %r" % vals.get(100))
        expect(oc.modify_handle_value(h, URL=url2) == h, "modify_handle_value(%s) failed" % h)
        expect(c.get_value_from_handle(h, "URL") == url2, "URL of %s not changed" % h)
        expect(oc.delete_handle(h) == h, "delete_handle(%s) failed" % h)
        expect(c.retrieve_handle_record_json(h) is None, "%s still there" % h)

    check("certificate_and_key (one file, UID subject), handleowner=%s: create, modify, delete" % args.cert_user, one_file_uid)

    # Authenticated by certificate but no admin of the other prefix: 403.
    def other_prefix():
        foreign = "%s/PyHandle-CertForeign-%s" % (args.other_prefix, run)
        how = expect_refused(lambda: cc.register_handle(foreign, url1, overwrite=True), "create under %s" % args.other_prefix)
        expect(c.retrieve_handle_record_json(foreign) is None, "%s was created" % foreign)
        print("      refused as: %s" % how)

    check("certificate identity cannot create under %s" % args.other_prefix, other_prefix)

    # Same subject, key not an HS_PUBKEY of the identity: authentication fails.
    def wrong_key():
        bad = cert_client_from_json(url, args.wrong_cert_file, args.wrong_key_file, workdir, "credentials-wrong.json")
        bad_handle = "%s/PyHandle-CertBad-%s" % (prefix, run)
        attempts = [
            ("register_handle(%s)" % bad_handle, lambda: bad.register_handle(bad_handle, url1, overwrite=True)),
            ("modify_handle_value(%s)" % handle, lambda: bad.modify_handle_value(handle, URL=url1)),
            ("delete_handle(%s)" % handle, lambda: bad.delete_handle(handle)),
        ]
        for what, call in attempts:
            try:
                result = call()
            except HandleAuthenticationError as e:
                expect(status_of(e) == 401, "%s: expected HTTP 401, got %s: %s" % (what, status_of(e), e))
            else:
                raise CheckFailed("%s with an unregistered key was accepted (returned %r)" % (what, result))
        expect(c.retrieve_handle_record_json(bad_handle) is None, "%s created with the wrong key" % bad_handle)
        expect(c.retrieve_handle_record_json(handle) is not None, "%s deleted with the wrong key" % handle)
        expect(c.get_value_from_handle(handle, "URL") == url2, "%s modified with the wrong key" % handle)

    check("certificate with the same subject but an unregistered key is refused (HTTP 401), nothing written", wrong_key)

    def delete():
        expect(cc.delete_handle(handle) == handle, "delete_handle(%s) failed" % handle)
        expect(c.retrieve_handle_record_json(handle) is None, "%s still there" % handle)

    check("certificate client: delete_handle(%s) removes it" % handle, delete)


if __name__ == "__main__":
    main()
