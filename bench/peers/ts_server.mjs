// The TypeScript SDK peer of bench/run: @modelcontextprotocol/sdk's Streamable HTTP server,
// stateless (a server and transport per request, as the SDK's stateless example does, JSON
// responses), behind `requireBearerAuth` with a verifier built on jose's remote JWKS
// (`createRemoteJWKSet` caches the key set) checking RS256, issuer and audience.
//
//   PORT=... JWKS_URL=... ISSUER=... AUDIENCE=... node ts_server.mjs
import express from "express";
import { createRemoteJWKSet, jwtVerify } from "jose";
import { z } from "zod";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";
import { InvalidTokenError } from "@modelcontextprotocol/sdk/server/auth/errors.js";

const port = Number(process.env.PORT);
const issuer = process.env.ISSUER;
const audience = process.env.AUDIENCE;
const jwks = createRemoteJWKSet(new URL(process.env.JWKS_URL));

const verifier = {
  async verifyAccessToken(token) {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, jwks, { issuer, audience, algorithms: ["RS256"] }));
    } catch (error) {
      throw new InvalidTokenError(`token validation failed: ${error.code ?? error.message}`);
    }
    return {
      token,
      clientId: String(payload.client_id ?? payload.sub ?? ""),
      scopes: typeof payload.scope === "string" ? payload.scope.split(" ") : [],
      expiresAt: payload.exp,
    };
  },
};

function buildServer() {
  const server = new McpServer({ name: "scalekit-ts-peer", version: "1.0.0" });
  server.registerTool(
    "greet_user",
    {
      description: "Greets the user with a personalized message.",
      inputSchema: { name: z.string() },
    },
    async ({ name }) => ({ content: [{ type: "text", text: `Hi ${name}, welcome to Scalekit!` }] }),
  );
  return server;
}

const app = express();
app.use(express.json());
app.get("/health", (_req, res) => res.json({ status: "healthy" }));
app.post(
  "/",
  requireBearerAuth({
    verifier,
    resourceMetadataUrl: `http://127.0.0.1:${port}/.well-known/oauth-protected-resource`,
  }),
  async (req, res) => {
    const server = buildServer();
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    res.on("close", () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res, req.body);
  },
);
app.listen(port, "127.0.0.1");
