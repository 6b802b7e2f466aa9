"""A recording SMTP sink for the email provider tests and benchmark (aiosmtpd on loopback).

Prints one JSON object per line to stdout:
  {"event": "ready", "port": N}                        once listening
  {"event": "rcpt", "address": A, "reply": R}          every RCPT TO, accepted or not
  {"event": "auth", "login": L, "ok": bool}            every AUTH attempt
  {"event": "message", "mail_from": F, "rcpt_tos": [...], "tls": bool,
   "login": L or null, "data": raw message (latin-1)}  every accepted DATA
With --quiet only "ready" is printed and messages are counted, for the benchmark.

  sink.py --port 0 [--tls none|starttls|implicit --cert C --key K]
          [--auth USER:PASSWORD] [--reject ADDRESS=REPLY ...] [--quiet] [--delay-ms N]

--delay-ms holds every DATA that long before accepting it (and recording it), so a test can
kill a sender while messages are in flight.
"""

import argparse
import asyncio
import json
import signal
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# aiosmtpd itself still sets the deprecated Session.login_data on every successful AUTH.
warnings.filterwarnings("ignore", message="Session.login_data")


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Sink:
    def __init__(self, rejects, quiet, delay):
        self.rejects = rejects
        self.quiet = quiet
        self.delay = delay
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rejects.get(address.lower())
        if not self.quiet:
            emit({"event": "rcpt", "address": address, "reply": reply or "250 OK"})
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        self.count += 1
        if not self.quiet:
            login = session.auth_data.decode() if isinstance(session.auth_data, bytes) else None
            tls = (
                server.transport.get_extra_info("ssl_object") is not None
                or server._tls_protocol is not None
            )
            emit({
                "event": "message",
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "tls": tls,
                "login": login if session.authenticated else None,
                "data": envelope.original_content.decode("latin-1"),
            })
        return "250 2.0.0 Ok: queued"


def authenticator(user, password, quiet):
    def check(server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = auth_data.login.decode() == user and auth_data.password.decode() == password
        if not quiet:
            emit({"event": "auth", "login": auth_data.login.decode(), "ok": ok})
        # handled=False: aiosmtpd then answers 535 itself on failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login if ok else None)

    return check


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth", help="USER:PASSWORD; AUTH is then required")
    parser.add_argument("--reject", action="append", default=[], help="ADDRESS=REPLY")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--delay-ms", type=int, default=0)
    args = parser.parse_args()

    rejects = {}
    for spec in args.reject:
        address, _, reply = spec.partition("=")
        rejects[address.lower()] = reply
    context = None
    if args.tls != "none":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
    handler = Sink(rejects, args.quiet, args.delay_ms / 1000)
    smtp_kwargs = {"hostname": "sink.test", "decode_data": False}
    if args.tls == "starttls":
        smtp_kwargs["tls_context"] = context
    if args.auth:
        user, _, password = args.auth.partition(":")
        smtp_kwargs["authenticator"] = authenticator(user, password, args.quiet)
        smtp_kwargs["auth_required"] = True
        # Over plain text only with implicit TLS or after STARTTLS, as real relays do.
        smtp_kwargs["auth_require_tls"] = args.tls != "none"

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(handler, **smtp_kwargs),
            "127.0.0.1",
            args.port,
            ssl=context if args.tls == "implicit" else None,
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        emit({"event": "ready", "port": server.sockets[0].getsockname()[1]})
        await stop.wait()
        server.close()
        if args.quiet:
            emit({"event": "count", "messages": handler.count})

    asyncio.run(serve())


if __name__ == "__main__":
    main()
