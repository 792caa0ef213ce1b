"""A real SMTP server the project did not write, for the integration tests:
aiosmtpd on a free loopback port with STARTTLS required and AUTH (PLAIN or
LOGIN) after it. Each message received is saved as it arrived on the wire
(dot-unstuffed, nothing else changed) with its envelope beside it.

Run as a process: python3 aiosmtpd_server.py DIR CERT KEY USER PASSWORD
It writes DIR/port once listening and DIR/msg-N.eml plus DIR/msg-N.json
(mail_from, rcpt_tos, tls, auth_user) per message."""

import asyncio
import json
import ssl
import sys
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Saver:
    def __init__(self, directory):
        self.dir = Path(directory)
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        n = self.n
        self.n += 1
        raw = envelope.original_content or envelope.content
        (self.dir / f"msg-{n}.tmp").write_bytes(raw)
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                "tls": session.ssl is not None,
                "auth_user": session.auth_data.login.decode()
                if isinstance(session.auth_data, LoginPassword) else None}
        (self.dir / f"msg-{n}.json").write_text(json.dumps(meta))
        # the .eml appears whole: a reader never sees half a message
        (self.dir / f"msg-{n}.tmp").rename(self.dir / f"msg-{n}.eml")
        return "250 2.0.0 OK: queued"


def main():
    directory, cert, key, user, password = sys.argv[1:6]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    handler = Saver(directory)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
              and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def factory():
        return SMTP(handler, tls_context=ctx, require_starttls=True, auth_required=True,
                    auth_require_tls=True, authenticator=authenticator,
                    hostname="aiosmtpd.test")

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(factory, host="127.0.0.1", port=0))
    port = server.sockets[0].getsockname()[1]
    tmp = Path(directory) / "port.tmp"
    tmp.write_text(str(port))
    tmp.rename(Path(directory) / "port")
    loop.run_forever()


if __name__ == "__main__":
    main()
