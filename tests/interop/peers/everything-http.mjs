// `@modelcontextprotocol/server-everything` over stateful Streamable HTTP on 127.0.0.1 only, for
// the gateway cases (test_gateway.py). The package's own `streamableHttp` transport listens on
// every interface (its `app.listen(PORT)` takes no host), which the suite never does, so this
// serves the package's own server (`createServer()`, the one its stdio and HTTP entry points
// use) with the TypeScript SDK's transport: one server per MCP session, GET for the session's
// standalone stream, DELETE to end it. No authentication: the gateway in front of it is the
// thing under test.
//
//   node everything-http.mjs [--port P]
//
// It prints `ready http://127.0.0.1:P/mcp` on stdout once it listens.

import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';

import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { createServer } from '@modelcontextprotocol/server-everything/dist/server/index.js';

const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } } });

const sessions = new Map();
const app = createMcpExpressApp({ host: '127.0.0.1' });

const noSession = (req, res) =>
  res.status(400).json({ jsonrpc: '2.0', id: req.body?.id ?? null, error: { code: -32000, message: 'no such session' } });

app.post('/mcp', async (req, res) => {
  const id = req.headers['mcp-session-id'];
  if (id) {
    const transport = sessions.get(id);
    return transport ? transport.handleRequest(req, res, req.body) : noSession(req, res);
  }
  if (!isInitializeRequest(req.body)) return noSession(req, res);
  const { server, cleanup } = createServer();
  const transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    onsessioninitialized: (sessionId) => sessions.set(sessionId, transport),
  });
  transport.onclose = () => {
    if (transport.sessionId) {
      sessions.delete(transport.sessionId);
      cleanup(transport.sessionId);
    }
  };
  await server.connect(transport);
  await transport.handleRequest(req, res, req.body);
});

const existing = async (req, res) => {
  const transport = sessions.get(req.headers['mcp-session-id']);
  return transport ? transport.handleRequest(req, res) : noSession(req, res);
};
app.get('/mcp', existing);
app.delete('/mcp', existing);

const listener = app.listen(Number(values.port), '127.0.0.1', () => {
  console.log(`ready http://127.0.0.1:${listener.address().port}/mcp`);
});
