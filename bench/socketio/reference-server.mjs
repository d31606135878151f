// The reference: a stock Node `socket.io` 4.x server doing what vigil's socketio profile does
// in the benchmark. POST /publish {"event","data"} -> io.emit(event, data).
//
//   node reference-server.mjs [PORT]        (listens on 127.0.0.1:PORT, default 8790)
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2] || process.env.PORT || 8790);

const http = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/publish') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let msg;
      try {
        msg = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"bad json"}');
        return;
      }
      if (typeof msg.event !== 'string' || !msg.event) {
        res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"event"}');
        return;
      }
      io.emit(msg.event, msg.data);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
    });
    return;
  }
  if (req.method === 'GET' && req.url === '/health') {
    res.writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ ok: true, clients: io.engine.clientsCount }));
    return;
  }
  res.writeHead(404).end();
});

// Defaults of socket.io 4 (no perMessageDeflate, pingInterval 25 s, pingTimeout 20 s), the
// same CORS as vigil's default --socketio-cors '*'.
const io = new Server(http, { serveClient: false, cors: { origin: true, credentials: true } });

http.listen(port, '127.0.0.1', () => {
  console.log(`reference socket.io server on 127.0.0.1:${port} (pid ${process.pid})`);
});

const stop = () => {
  io.close();
  http.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
