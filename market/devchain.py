"""The embedded test chain served over JSON-RPC, so processes beside each other share one chain and one escrow.

`loopylab market serve` keeps its EVM (eth-tester) in its own process. With several uvicorn workers and a relay
process, each would otherwise build its own chain and escrow, and a bounty funded through one worker would be
unknown to the next. `serve --workers N` (or `loopylab market chain`) runs one embedded chain here, deploys one
escrow, and points every worker and the relay at it with `LOOPYLAB_CHAIN_URL` and the escrow address. The chain
is test money only and lives as long as the process that serves it.

JSON-RPC 2.0 over HTTP POST, one request or a batch; each request runs under the chain's lock (eth-tester is
not thread-safe). Bytes in results go out as 0x-hex.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loopylab.market.chain import Chain

log = logging.getLogger(__name__)
MAX_BODY = 8 << 20
TEST_CHAIN_ENV = "LOOPYLAB_TEST_CHAIN"  # "1" in the processes served by a DevChain: the faucet works


def _jsonable(value):
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class DevChain:
    """An embedded chain with a fresh escrow, answering JSON-RPC on host:port (port 0: any free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.chain = Chain.embedded_chain()
        from web3.middleware import combine_middleware

        provider = self.chain.w3.provider
        # eth-tester answers in its own shapes: the tester provider's own middleware (sender defaults, field names
        # and encodings of a node) turns them into what a JSON-RPC node sends
        rpc = combine_middleware(provider._middleware, self.chain.w3, provider.make_request)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                """Silent: a request is not news (the handler logs each one to stderr by default)."""

            def do_POST(self):
                size = int(self.headers.get("content-length") or 0)
                if size <= 0 or size > MAX_BODY:
                    self.send_error(413 if size > 0 else 411)
                    return
                try:
                    req = json.loads(self.rfile.read(size))
                except ValueError:
                    self._reply({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
                    return
                answers = [self._one(r) for r in req] if isinstance(req, list) else self._one(req)
                self._reply(answers)

            def _one(self, req) -> dict:
                rid = req.get("id") if isinstance(req, dict) else None
                if not isinstance(req, dict) or not isinstance(req.get("method"), str):
                    return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32600, "message": "invalid request"}}
                try:
                    out = rpc(req["method"], req.get("params") or [])
                except Exception as e:  # the EVM's refusals (reverts, bad nonces) go back as JSON-RPC errors
                    return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32000, "message": str(e)}}
                return {**_jsonable(dict(out)), "jsonrpc": "2.0", "id": rid}

            def _reply(self, obj) -> None:
                body = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="devchain", daemon=True)

    @property
    def escrow_address(self) -> str:
        return self.chain.escrow.address

    def env(self) -> dict[str, str]:
        """What a worker or relay process needs to use this chain: its URL, the escrow, the relay account's key
        (a throwaway key funded with test money on this chain only)."""
        return {
            "LOOPYLAB_CHAIN_URL": self.url,
            "LOOPYLAB_MARKET_CHAIN_URL": self.url,
            "LOOPYLAB_MARKET_ESCROW_ADDRESS": self.escrow_address,
            "LOOPYLAB_CHAIN_KEY": "0x" + self.chain.operator.key.hex().removeprefix("0x"),
            TEST_CHAIN_ENV: "1",
        }

    def start(self) -> DevChain:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
