// An MCP server built on the official TypeScript SDK (`@modelcontextprotocol/sdk`) for the
// interop suite: `greet_user` with its own wording, over stdio or Streamable HTTP (stateless)
// behind the SDK's own `requireBearerAuth` middleware with a static token.
//
//   node ts-sdk-server.mjs stdio
//   INTEROP_TOKEN=T node ts-sdk-server.mjs http --port P
//
// Over HTTP it prints `ready http://127.0.0.1:P/mcp` on stdout once it listens.

import { parseArgs } from 'node:util';

import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { requireBearerAuth } from '@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js';
import { z } from 'zod';

function build() {
  const server = new McpServer({ name: 'ts-sdk-interop', version: '1.0.0' });
  server.registerTool(
    'greet_user',
    { description: 'Greets the user by name.', inputSchema: { name: z.string() } },
    async ({ name }) => ({ content: [{ type: 'text', text: `Hello ${name}, from the TypeScript SDK!` }] }),
  );
  return server;
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { port: { type: 'string', default: '0' } },
});

if (positionals[0] === 'stdio') {
  await build().connect(new StdioServerTransport());
} else if (positionals[0] === 'http') {
  const token = process.env.INTEROP_TOKEN;
  if (!token) {
    console.error('INTEROP_TOKEN is required for http');
    process.exit(2);
  }
  const verifier = {
    async verifyAccessToken(presented) {
      if (presented !== token) {
        const { InvalidTokenError } = await import('@modelcontextprotocol/sdk/server/auth/errors.js');
        throw new InvalidTokenError('unknown token');
      }
      return { token: presented, clientId: 'interop', scopes: ['mcp:tools'], expiresAt: Math.floor(Date.now() / 1000) + 3600 };
    },
  };
  const app = createMcpExpressApp({ host: '127.0.0.1' });
  app.post('/mcp', requireBearerAuth({ verifier }), async (req, res) => {
    const server = build();
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    res.on('close', () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  const notAllowed = (_req, res) => res.status(405).set('Allow', 'POST').end();
  app.get('/mcp', notAllowed);
  app.delete('/mcp', notAllowed);
  const listener = app.listen(Number(values.port), '127.0.0.1', () => {
    console.log(`ready http://127.0.0.1:${listener.address().port}/mcp`);
  });
} else {
  console.error('usage: ts-sdk-server.mjs stdio | http --port P');
  process.exit(2);
}
