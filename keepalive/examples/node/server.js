// A plain Node HTTP server under keepalive, without a library:
//
//   keepalive --workers 2 --listen 127.0.0.1:3000 --ready-fd 4 \
//       --worker-env NODE_APP_INSTANCE -- node server.js
//
// - its listener is keepalive's socket, descriptor 3, when LISTEN_FDS is set
//   (systemd's socket activation; every worker shares it);
// - it says it is ready by writing a newline to KEEPALIVE_READY_FD (s6's
//   notification-fd), once it listens: a reload starts the next worker only
//   then;
// - on SIGTERM (a stop, or a reload retiring it) it drains: no new
//   connection, every request in flight answered, and each keep-alive
//   connection ended without a race: a busy one after its answer, which
//   says `Connection: close`; an idle one at its keep-alive timeout (5 s).
//   Not with `server.close()`: from Node 19 on it also closes the idle
//   connections at once, and a client reusing one at that moment gets a
//   reset (measured with Node 20 and eight keep-alive clients: a failed
//   request in 4 of 6 reloads); before Node 19 it leaves them open until
//   keepalive's kill timeout. What is still open after 10 s (a stuck
//   client) is closed before that timeout (15 s) would kill the worker.
"use strict";
const fs = require("fs");
const http = require("http");
const net = require("net");

let draining = false;

const server = http.createServer((request, response) => {
  const ms = Number(new URL(request.url, "http://localhost").searchParams.get("ms") || 0);
  setTimeout(() => {
    if (draining) response.setHeader("Connection", "close");
    response.end(`worker ${process.env.NODE_APP_INSTANCE} pid ${process.pid} env ${process.env.NODE_ENV}\n`);
  }, ms);
});

server.listen(process.env.LISTEN_FDS ? { fd: 3 } : { port: Number(process.env.PORT || 3000) }, () => {
  const ready = process.env.KEEPALIVE_READY_FD;
  if (ready) {
    fs.writeSync(Number(ready), "\n");
    fs.closeSync(Number(ready));
  }
});

function drain() {
  if (draining) return;
  draining = true;
  // Stop listening; exit once the last connection has ended.
  net.Server.prototype.close.call(server, () => process.exit(0));
  setTimeout(() => server.closeAllConnections(), 10_000).unref();
}
process.on("SIGTERM", drain);
process.on("SIGINT", drain);
